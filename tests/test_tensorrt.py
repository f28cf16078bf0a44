"""TensorRT adapter. TensorRT cannot be installed where this project is built and tested, so the
tests that build and run plans skip with that reason; what runs everywhere: the adapter imports
without tensorrt/pycuda, fails with a clear EngineError, and uses no API that TensorRT 10/11 removed."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from batchscore.engines import EngineError, EngineOptions, create_engine

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "data" / "model.onnx"
SOURCES = [ROOT / "batchscore/engines/tensorrt_backend.py", ROOT / "batchscore/engines/cudabuffers.py"]
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
# Removed in TensorRT 10 or 11 (weak typing, calibrators, implicit batch, bindings, v2 enqueue).
REMOVED = ["execute_async_v2", "execute_v2", "BuilderFlag.FP16", "BuilderFlag.INT8", "BuilderFlag.BF16",
           "int8_calibrator", "IInt8", "Calibrator", "get_binding", "binding_is_input", "num_bindings",
           "max_batch_size", "EXPLICIT_BATCH", "build_engine(", "max_workspace_size", "platform_has_fast",
           "OBEY_PRECISION_CONSTRAINTS", "set_quantization_flag", "device_memory_size"]


def test_adapter_imports_without_tensorrt_or_pycuda() -> None:
    module = importlib.import_module("batchscore.engines.tensorrt_backend")
    assert module.TensorRTEngine.name == "tensorrt"


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed here")
def test_missing_tensorrt_is_a_clear_engine_error() -> None:
    engine = create_engine("tensorrt", MODEL, EngineOptions(8, device=0))
    with pytest.raises(EngineError, match="needs the tensorrt Python package"):
        engine.activate()


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_no_removed_tensorrt_api(source: Path) -> None:
    text = source.read_text()
    assert not [name for name in REMOVED if name in text]
    for needed in ("set_input_shape", "set_tensor_address", "execute_async_v3", "build_serialized_network",
                   "create_optimization_profile", "create_timing_cache", "STRONGLY_TYPED"):
        assert needed in SOURCES[0].read_text()
    assert not re.search(r"BuilderFlag\.", text)  # precision lives in the ONNX graph (strong typing)


needs_trt = pytest.mark.skipif(not HAVE_TRT, reason="TensorRT is not installable on the machines this project is "
                                                    "built and tested on; these run wherever tensorrt imports")


@needs_trt
def test_plan_is_built_once_then_loaded_and_agrees_with_onnxruntime(tmp_path: Path) -> None:
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((n, 3, 224, 224), dtype=np.float32) for n in (8, 8, 3)]
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    expected = [session.run(None, {session.get_inputs()[0].name: b})[0] for b in batches]
    statuses = []
    for _ in range(2):
        with create_engine("tensorrt", MODEL, EngineOptions(8, device=0, cache_dir=tmp_path)) as engine:
            statuses.append(engine.cache_status)
            got = [o["logits"] for o in engine.infer_iter(batches)]
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, atol=1e-2 * max(1.0, np.abs(e).max()), rtol=0)
    assert statuses == ["built", "hit"]
    assert list(tmp_path.glob("timing-*.cache"))


@needs_trt
def test_a_truncated_plan_is_rebuilt(tmp_path: Path) -> None:
    options = EngineOptions(8, device=0, cache_dir=tmp_path)
    with create_engine("tensorrt", MODEL, options):
        pass
    plan = next(tmp_path.glob("tensorrt-plan-*.plan"))
    plan.write_bytes(plan.read_bytes()[:1000])
    with create_engine("tensorrt", MODEL, options) as engine:
        assert engine.cache_status == "rebuilt"
