"""Loaders and engines apart: the backend choice (auto never picks TensorRT), one `resolve` for every command,
the typed top-k, and the torch backend's converted-module cache read back on a second start, not rebuilt."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from batchscore.config import ConfigError, load_job
from batchscore.engines import (EngineOptions, Outputs, TopK, create_engine, installed, prebuild,
                                resolve)
from batchscore.runner import batch_topk, topk
from conftest import PYTHON, ROOT, batchscore, write_job

MODEL = ROOT / "data" / "model.onnx"
HAVE_TORCH = all(importlib.util.find_spec(p) for p in ("torch", "onnx2torch"))
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch and onnx2torch not installed")


def node_with_tensorrt(tmp_path: Path) -> dict[str, str]:
    """The environment of a node where TensorRT and pycuda are installed (empty packages: found, never run) and
    nvidia-smi lists one GPU: everything `auto` looked at when it used to choose TensorRT."""
    site = tmp_path / "site"
    for package in ("tensorrt", "pycuda"):
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, GPU-00000000-0000-0000-0000-000000000000, Test GPU, 550.00'\n")
    smi.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}


def test_auto_never_picks_tensorrt_and_named_tensorrt_says_it_is_unverified(tmp_path: Path) -> None:
    code = ("import json; from batchscore.engines import choose_backend, installed; from batchscore.gpu import "
            "visible_gpu_count; print(json.dumps([installed('tensorrt'), visible_gpu_count(), "
            "choose_backend('auto'), choose_backend('tensorrt')]))")
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=node_with_tensorrt(tmp_path),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    found, gpus, (auto, reason), (named, named_reason) = json.loads(proc.stdout)
    assert found and gpus == 1  # the node looks as it did when auto chose TensorRT
    assert auto in ("torch", "onnxruntime") and "TensorRT" not in reason, reason
    assert named == "tensorrt" and "unverified" in named_reason and "never executed" in named_reason


def test_resolve_settles_the_job_for_its_device_and_names_missing_packages(tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path / "job.toml", input=str(tmp_path), model=str(MODEL),
                             output=str(tmp_path / "out"), backend="onnxruntime"))
    resolved = resolve(job)
    assert (resolved.backend, resolved.gpu) == ("onnxruntime", False)
    assert (resolved.job.batch_size, resolved.job.compile) == (32, "eager")  # the CPU's settings
    assert resolve(job, gpu=True).job.compile == "cudagraph"  # the caller decides where its engines run
    if not installed("tensorrt"):
        with pytest.raises(ConfigError, match="backend 'tensorrt' needs .*pip install"):
            resolve(job.with_overrides(backend="tensorrt"))


def test_typed_top_k_is_taken_as_computed_and_computed_here_otherwise() -> None:
    logits = np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32)
    with create_engine("onnxruntime", MODEL, EngineOptions(2, threads=1)) as engine:
        out = engine.infer(np.zeros((2, 3, 224, 224), np.float32))
    assert isinstance(out, Outputs) and out.topk is None and list(out) == ["logits"]  # ORT leaves it to the loop
    index, score = batch_topk(Outputs({"logits": logits}), 3)
    want = topk(logits, 3)
    assert (index == want[0]).all() and (score == want[1]).all()
    computed = TopK(want[0][:, ::-1].copy(), want[1][:, ::-1].copy())  # any arrays an engine sends are taken
    taken = batch_topk(Outputs({"logits": logits}, computed), 3)
    assert taken[0] is computed.index and taken[1] is computed.score


def engine_start(cache: Path) -> dict:
    """A torch engine activated in a fresh process (as a rank starts), on the CPU: cache status, phases, logits."""
    code = ("import json, sys, numpy as np; from pathlib import Path; "
            "from batchscore.engines import EngineOptions, create_engine; "
            "e = create_engine('torch', Path(sys.argv[1]), EngineOptions(2, threads=1, cache_dir=Path(sys.argv[2])))"
            ".activate(); x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32); "
            "print(json.dumps({'cache': e.cache_status, 'phases': e.start_phases, "
            "'onnx2torch': 'onnx2torch' in sys.modules, "
            "'logits': e.infer(x)['logits'].tolist()}))")
    proc = subprocess.run([PYTHON, "-c", code, str(MODEL), str(cache)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@needs_torch
def test_second_start_reads_the_converted_module_from_the_cache(tmp_path: Path) -> None:
    """The first start converts and stores the module; the second, in another process, reads that same file (its
    bytes and sidecar untouched, no rebuild, onnx2torch not even imported) and computes what ONNX Runtime does."""
    first = engine_start(tmp_path)
    (entry,) = tmp_path.glob("torch-module-*.pt")
    sidecar = entry.with_name(entry.name + ".json")
    stamp = (entry.stat().st_mtime_ns, entry.stat().st_size, sidecar.read_text())
    second = engine_start(tmp_path)
    assert (first["cache"], second["cache"]) == ("built", "hit")
    assert (first["onnx2torch"], second["onnx2torch"]) == (True, False)  # the stored module holds torch's classes
    assert (entry.stat().st_mtime_ns, entry.stat().st_size, sidecar.read_text()) == stamp
    assert len(list(tmp_path.glob("torch-module-*.pt"))) == 1 and not list(tmp_path.glob(".*tmp*"))
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    for start in (first, second):
        np.testing.assert_allclose(np.array(start["logits"]), expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


@needs_torch
def test_a_damaged_module_entry_is_rebuilt_once(tmp_path: Path) -> None:
    from batchscore.engines.torch_loaders import ModuleFromOnnx

    assert ModuleFromOnnx(MODEL, tmp_path)() is not None
    (entry,) = tmp_path.glob("torch-module-*.pt")
    entry.write_bytes(b"truncated")
    loader = ModuleFromOnnx(MODEL, tmp_path)
    converted = loader()
    assert loader.status == "rebuilt" and entry.stat().st_size > 1000 and converted.graph_dtype is None


@needs_torch
def test_prebuild_calls_the_loader_only_and_the_engine_then_hits(tmp_path: Path) -> None:
    options = EngineOptions(2, threads=1, cache_dir=tmp_path)
    called = prebuild("torch", MODEL, options)
    assert called.status == "built" and len(list(tmp_path.glob("torch-module-*.pt"))) == 1
    with create_engine("torch", MODEL, options) as engine:
        assert engine.cache_status == "hit" and "load" in engine.start_phases


@needs_torch
def test_build_command_fills_the_cache_on_every_rank(tmp_path: Path, sample_dir: Path) -> None:
    """`build` under two ranks: one rank converts, the other waits and finds the entry; a second build hits."""
    job = write_job(tmp_path / "job.toml", input=str(sample_dir), model=str(MODEL), output=str(tmp_path / "out"),
                    backend="torch", cache_dir=str(tmp_path / "cache"))
    first = batchscore("build", "--job", str(job), ranks=2)
    assert first.returncode == 0, first.stderr
    statuses = sorted(line.split(" engine ")[1].split()[0] for line in first.stdout.splitlines() if " engine " in line)
    assert statuses in (["built", "waited"], ["built", "hit"]), first.stdout  # the other rank waited, or came later
    again = batchscore("build", "--job", str(job), ranks=2)
    assert again.stdout.count("torch engine hit") == 2, again.stdout
    assert len(list((tmp_path / "cache").glob("torch-module-*.pt"))) == 1
    assert not (tmp_path / "out").exists()  # building scores nothing


def test_no_engine_module_imports_the_runner_or_a_command() -> None:
    """Loaders and engines are a library: the engine package imports no runner, CLI or command module."""
    code = ("import sys, batchscore.engines, batchscore.engines.build, batchscore.engines.choice; "
            "print(sorted(m for m in sys.modules if m in ('batchscore.runner', 'batchscore.cli', 'batchscore.bench', "
            "'batchscore.doctor') or m.startswith('batchscore.commands')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


@needs_torch
def test_converted_module_holds_only_torch_classes_and_keeps_its_fusable_chains(residual_onnx: Path) -> None:
    """onnx2torch's modules are inlined (nothing of onnx2torch left to import when the module is read back), the
    five convolution+ReLU chains are still found for cuDNN's fused calls, and the outputs are ONNX Runtime's."""
    import torch

    from batchscore.engines.torch_fuse import fuse_conv_relu
    from batchscore.engines.torch_loaders import convert_onnx

    converted = convert_onnx(residual_onnx)
    assert not [type(m) for m in converted.net.modules() if type(m).__module__.startswith("onnx2torch")]
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
    session = ort.InferenceSession(str(residual_onnx), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        np.testing.assert_allclose(converted.net(torch.from_numpy(x)).numpy(), session.run(None, {"input": x})[0],
                                   atol=1e-5)
    assert fuse_conv_relu(converted.net) == 5
