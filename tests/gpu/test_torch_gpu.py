"""The torch backend on a real GPU: agrees with ONNX Runtime on the sample model in FP32 and FP16,
eager and CUDA-graph modes, pipelined and one batch at a time, short final batch included; and the
compiled mode's AOTInductor package cached on disk and loaded again. Skips without CUDA or onnx2torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")

from batchscore.engines import EngineOptions, create_engine  # noqa: E402
from batchscore.runner import batch_topk, topk  # noqa: E402

MODEL = Path(__file__).resolve().parents[2] / "data" / "model.onnx"


def reference(batches: list[np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    return [session.run(None, {session.get_inputs()[0].name: b})[0] for b in batches]


@pytest.fixture(scope="module")
def batches() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((n, 3, 224, 224), dtype=np.float32) for n in (16, 16, 5)]


@pytest.mark.parametrize("precision,mode,tol", [("fp32", "eager", 1e-3), ("fp16", "eager", 5e-2),
                                                ("fp16", "cudagraph", 5e-2)])
def test_agrees_with_onnxruntime(batches, precision: str, mode: str, tol: float) -> None:  # noqa: ANN001
    expected = reference(batches)
    torch.set_num_threads(1)  # as under mpirun, which starts torch with one thread: the engine sets the rank's
    with create_engine("torch", MODEL, EngineOptions(16, 4, device=0, precision=precision, compile=mode)) as engine:
        assert engine.device_name.startswith("cuda:0 ") and torch.get_num_threads() == 4
        piped = [o["logits"] for o in engine.infer_iter(batches)]
        single = [engine.infer(b)["logits"] for b in batches]
    for got in (piped, single):
        assert [len(g) for g in got] == [16, 16, 5]
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, atol=tol * max(1.0, np.abs(e).max()), rtol=0)
            assert (g.argmax(1) == e.argmax(1)).mean() >= 0.9


@pytest.mark.parametrize("mode", ["eager", "cudagraph"])
def test_top_k_on_the_gpu_is_the_host_top_k_of_the_logits(batches, mode: str) -> None:  # noqa: ANN001
    """With EngineOptions.top_k the engine returns the softmax top-k it computed on the GPU beside the logits, rows
    of the short batch only; it equals runner.topk of those logits, which batch_topk then no longer computes."""
    with create_engine("torch", MODEL, EngineOptions(16, device=0, precision="fp16", compile=mode, top_k=5)) as engine:
        outputs = list(engine.infer_iter(batches))
    for out, batch in zip(outputs, batches):
        assert out.topk.index.shape == out.topk.score.shape == (len(batch), 5)
        assert out.topk.index.dtype == np.int32 and out.topk.score.dtype == np.float32
        want_idx, want_score = topk(out["logits"], 5)
        assert (out.topk.index == want_idx).mean() >= 0.99  # a near tie may round the other way on the GPU
        np.testing.assert_allclose(out.topk.score, want_score, rtol=1e-5, atol=1e-7)
        on_gpu = out.topk.index, out.topk.score
        taken = batch_topk(out, 5)
        assert taken[0] is on_gpu[0] and taken[1] is on_gpu[1] and list(out) == ["logits"]


def test_compiled_artifact_is_cached_and_reloaded(batches, tmp_path: Path) -> None:  # noqa: ANN001
    options = EngineOptions(16, device=0, precision="fp16", compile="compiled", cache_dir=tmp_path)
    expected = reference(batches)
    statuses = []
    for _ in range(2):
        with create_engine("torch", MODEL, options) as engine:
            statuses.append(engine.cache_status)
            phases = engine.start_phases  # where the start went, step by step
            assert {"cuda_init", "load", "buffers_capture"} <= set(phases), phases
            # the builder's child process converts, exports and compiles; this process only loads the package
            assert 0 < engine.setup_seconds <= phases["load"] + 0.001  # phases are rounded to ms
            got = [o["logits"] for o in engine.infer_iter(batches)]
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, atol=5e-2 * max(1.0, np.abs(e).max()), rtol=0)
    assert statuses == ["built", "hit"]
    assert len(list(tmp_path.glob("torch-aoti-*.pt2"))) == 1
    assert len(list(tmp_path.glob("torch-aoti-*.pt2.json"))) == 1


@pytest.mark.parametrize("precision,mode,tol", [("fp32", "eager", 1e-3), ("fp16", "cudagraph", 5e-2)])
def test_cudnn_fused_residual_network_agrees_with_onnxruntime(residual_onnx: Path, precision: str, mode: str,
                                                               tol: float) -> None:
    """Convolution → ReLU and convolution → residual add → ReLU run as cuDNN's fused calls (every chain taken,
    none refused) and give ONNX Runtime's logits, in FP32 (no TF32) and in FP16 under a CUDA graph."""
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((n, 3, 224, 224), dtype=np.float32) for n in (8, 3)]
    session = ort.InferenceSession(str(residual_onnx), providers=["CPUExecutionProvider"])
    expected = [session.run(None, {"input": b})[0] for b in batches]
    with create_engine("torch", residual_onnx, EngineOptions(8, 2, device=0, precision=precision,
                                                            compile=mode)) as engine:
        assert engine.note == "5 of 5 convolution+ReLU chains run as cuDNN fused calls", engine.note
        got = [o["logits"] for o in engine.infer_iter(batches)]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=tol * max(1.0, np.abs(e).max()), rtol=0)
