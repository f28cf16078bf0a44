"""The backends' packages and the decoders: installed, working, and what `auto` resolves to here."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from .. import engines
from ..decode.probe import tiny_jpeg
from ..decode.procs import DecodeProcesses
from ..preprocess import preprocess
from ..sources import Item
from .check import FAIL, OK, WARN, Check, try_import


def _describe(name: str, module: object) -> str:
    if name == "torch":
        cuda = module.cuda.is_available()
        return (f"{module.__version__}, CUDA {module.version.cuda or 'none'}, "
                f"{module.cuda.device_count() if cuda else 0} GPU(s) usable")
    if name == "onnxruntime":
        return f"{module.__version__}, providers: {', '.join(module.get_available_providers())}"
    return getattr(module, "__version__", getattr(module, "VERSION_TEXT", "?"))


def backend_checks(have_gpu: bool, requested: str | None) -> list[Check]:
    """Each backend package's state, and whether what `auto` (and the job) resolves to can run here."""
    checks = []
    for name in ("tensorrt", "pycuda", "torch", "onnxruntime"):
        module, why = try_import(name)
        if module is not None:
            detail = _describe(name, module)
            if name == "torch" and have_gpu and not module.cuda.is_available():
                checks.append(Check(name, WARN, f"{detail} on a node with GPUs",
                                    "install a CUDA build, e.g. pip install torch --index-url "
                                    "https://download.pytorch.org/whl/cu128 (the cuXYZ the driver supports: nvidia-smi)"))
            else:
                checks.append(Check(name, OK, detail))
        elif why.startswith("broken"):
            checks.append(Check(name, WARN, why, f"reinstall it: pip install --force-reinstall {name}"))
        else:
            checks.append(Check(name, OK, "not installed (optional)" if name != "onnxruntime" else why))
    for req in dict.fromkeys(("auto", requested or "auto")):
        backend, reason = engines.choose_backend(req)
        missing = [f"{package} ({why})" for package in engines.BACKEND_PACKAGES.get(backend, (backend,))
                   for why in [try_import(package)[1]] if why]
        if backend in engines.GPU_BACKENDS and not have_gpu:
            missing.append("a GPU (none visible to the ranks)")
        if missing:
            checks.append(Check("backend", FAIL, f"{req} → {backend}, which needs {', '.join(missing)}",
                                'install what is missing, or set backend = "onnxruntime" in the job'))
        else:
            checks.append(Check("backend", OK, f"{req} → {backend} ({reason})"))
    return checks


def decode_in_a_process(data: bytes, spec: object) -> tuple[int, ...]:
    """Decode `data` in a decode process (decode/procs.py), as a rank from 4 cores does: its row's shape."""
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "probe.jpg"
        path.write_bytes(data)
        procs = DecodeProcesses(1, spec.shape, warn=lambda why: None)
        try:
            out = np.full((1, *spec.shape), np.nan, np.float32)
            (error, _, _), = procs.decode(out, [Item(path.name, "file", str(path))], spec)
        finally:
            procs.close()
    if procs.broken or error or not np.isfinite(out).all():
        raise RuntimeError(procs.broken or error or "the process left its row unwritten")
    return out.shape[1:]


def decoder_checks(have_gpu: bool, spec: object) -> list[Check]:
    """Decode the tiny JPEG with each decoder present; GPU decoders only when a GPU is there."""
    data = tiny_jpeg()
    tries = {"Pillow": (lambda: preprocess(data, spec).shape, "pip install --force-reinstall pillow"),
             "Pillow in a decode process (worker_kind, from 4 cores a rank)": (
                 lambda: decode_in_a_process(data, spec), "ranks decode in threads instead (slower on many cores); "
                 "check that this Python runs `python -m batchscore.decode.procs` on the compute nodes, or set "
                 "worker_kind = \"thread\"")}
    if have_gpu:
        torch, _ = try_import("torch")
        tv_io, _ = try_import("torchvision.io")
        if tv_io is not None:
            tries["nvJPEG (torchvision)"] = (
                lambda: tuple(tv_io.decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), device="cuda").shape),
                f"pip install the torchvision built for torch {torch.__version__} (same CUDA build)")
        nvimg, _ = try_import("nvidia.nvimgcodec")
        if nvimg is not None:
            cuda = (getattr(torch.version, "cuda", None) if torch else None) or "<CUDA major>"
            fix = f"pip install 'nvidia-nvimgcodec-cu{cuda.split('.')[0]}[all]'   (its nvJPEG libraries for this CUDA)"
            # CUDA = nvJPEG's CUDA decoder (Huffman on the CPU, the rest on the GPU); GPU_ONLY is a batched variant.
            for label, kind in (("hardware", "HW_GPU_ONLY"), ("CUDA", "HYBRID_CPU_GPU"), ("CPU", "CPU_ONLY")):
                tries[f"nvImageCodec {label}"] = (lambda kind=kind: nvimg.Decoder(
                    backends=[nvimg.Backend(getattr(nvimg.BackendKind, kind))]).decode(data).shape, fix)
            from ..decode.hwjpeg import decode_one

            tries["nvImageCodec hardware, a batch a call (C API)"] = (
                lambda: decode_one(data, torch), "reinstall batchscore where a C compiler (cc) works, which builds "
                "the C call; without it ranks decode with torchvision's nvJPEG")
    checks = []
    for label, (attempt, fix) in tries.items():
        try:
            checks.append(Check("decoder", OK, f"{label}: decoded a JPEG to {tuple(attempt())}"))
        except Exception as exc:  # each library fails in its own way; the message is the diagnosis
            checks.append(Check("decoder", FAIL if label == "Pillow" else WARN,
                                f"{label} cannot decode a JPEG here: {type(exc).__name__}: {exc}", fix))
    return checks
