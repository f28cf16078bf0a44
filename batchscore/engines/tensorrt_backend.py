"""TensorRT adapter (TensorRT 10 and 11): a strongly typed plan per model, GPU and version, cached on disk.

The ONNX file is parsed into a strongly typed network (its precision is the graph's own: an FP16 or
Q/DQ-INT8 model is prepared before this step, as TensorRT 11 requires), with one optimization
profile over the batch axis (1 .. batch size, optimised for the batch size). Plans are built once
per node under a file lock (batchscore.enginecache) with a timing cache kept beside them. Inference
uses the named-tensor API on a ring of two pinned/device buffer sets (cudabuffers.BufferRing).
A batch decoded on the GPU (decode/gpu.py hands over a CUDA tensor) is copied device to device into
the ring's input buffer: staging it through pinned host memory would add a round trip over PCIe.

The plan comes from a loader (`PlanFromOnnx`) called with the rank's CUDA context current. This adapter has
never been executed on any machine this project runs on: `backend = "auto"` never picks it.

`tensorrt` and `pycuda` are imported only when this adapter is activated; names that exist in only
one TensorRT major version are looked up with getattr, never assumed.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..enginecache import StaleEntry, default_cache_dir
from ..gpu import driver_version
from ..model import inspect_model, model_sha256
from ..writer import atomic_path, publish
from . import TENSORRT_KIND, Engine, EngineError, EngineOptions, Outputs
from .loaders import CachedLoader

WORKSPACE_BYTES = 4 << 30


def _import_tensorrt():  # noqa: ANN202 - the module
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise EngineError(f"backend 'tensorrt' needs the tensorrt Python package ({exc}); install TensorRT 10 "
                          "or 11 for this CUDA version, or use backend = 'torch' or 'onnxruntime'") from None


def _network_flags(trt) -> int:  # noqa: ANN001 - the tensorrt module
    """STRONGLY_TYPED where the enum has it (10.x: opt-in; 11.x: always on, flag accepted)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def plan_key(model: Path, input_shape: tuple[int, ...], batch_size: int, gpu_name: str, capability: str,
             trt_version: str) -> dict:
    """Everything a plan depends on: a change in any of these builds a new plan."""
    return {"kind": TENSORRT_KIND, "model_sha256": model_sha256(model), "gpu": gpu_name,
            "compute_capability": capability, "driver": driver_version(), "tensorrt": trt_version,
            "input_shape": list(input_shape), "max_batch": batch_size}


class PlanFromOnnx(CachedLoader):
    """The model's plan for the current CUDA context's GPU, built once per node (timing cache kept beside the
    plans) and deserialized; `device` is the GPU the caller made current."""

    suffix = ".plan"

    def __init__(self, model: Path, batch: int, device: int | None, cache_dir: Path | None = None) -> None:
        super().__init__(cache_dir)
        self.model, self.batch, self.device = Path(model), batch, device

    def __call__(self):  # noqa: ANN204 - ICudaEngine
        trt = self.trt = _import_tensorrt()
        if self.device is None:
            raise EngineError("backend 'tensorrt' needs a GPU, and none is visible to this rank "
                              "(check CUDA_VISIBLE_DEVICES and the job's GPU request)")
        import pycuda.driver as cuda  # the caller's context is current: pycuda is initialised

        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        info = inspect_model(self.model)
        self.input_name, self.chw = info.input_name, tuple(info.input_shape[1:])
        if len(self.chw) != 3 or not all(isinstance(d, int) for d in self.chw):
            raise EngineError(f"{self.model}: TensorRT needs fixed C, H, W input dimensions, got {info.input_shape}")
        gpu = cuda.Device(self.device)
        self.gpu_name, self.capability = gpu.name(), "{}.{}".format(*gpu.compute_capability())
        return super().__call__()

    def key(self) -> dict:
        return plan_key(self.model, self.chw, self.batch, self.gpu_name, self.capability, self.trt.__version__)

    def build(self, path: Path) -> None:
        """Parse the ONNX into a strongly typed network and write a serialized plan to `path`."""
        trt = self.trt
        root = self.cache_dir or default_cache_dir()
        timing = root / re.sub(r"[^A-Za-z0-9_.-]", "_", f"timing-{self.gpu_name}-trt{trt.__version__}.cache")
        builder = trt.Builder(self.logger)
        network = builder.create_network(_network_flags(trt))
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(self.model)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"TensorRT cannot parse {self.model}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        profile = builder.create_optimization_profile()
        profile.set_shape(self.input_name, (1, *self.chw), (self.batch, *self.chw), (self.batch, *self.chw))
        config.add_optimization_profile(profile)
        cache = config.create_timing_cache(timing.read_bytes() if timing.is_file() else b"")
        config.set_timing_cache(cache, False)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise EngineError(f"TensorRT could not build a plan for {self.model}; see its log above")
        path.write_bytes(bytes(plan))
        tmp = atomic_path(timing)
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
        publish(tmp, timing)

    def read(self, path: Path):  # noqa: ANN201 - ICudaEngine
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:  # truncated, or built by another TensorRT version or for another GPU
            raise StaleEntry(str(path))
        return engine


class TensorRTEngine(Engine):
    name = "tensorrt"
    device_batches = True  # a CUDA tensor (decode/gpu.py) is copied device to device by the ring, no host staging

    @staticmethod
    def default_loader(model: Path, options: EngineOptions) -> PlanFromOnnx:
        return PlanFromOnnx(model, options.batch_size, options.device, options.cache_dir)

    @staticmethod
    def prebuild(loader: PlanFromOnnx) -> None:
        """Call the loader as `build` does: with a CUDA context of its GPU current for the call."""
        from .cudabuffers import CudaContext

        context = CudaContext(loader.device)
        try:
            loader()
        finally:
            context.close()

    def _activate(self) -> None:
        trt = _import_tensorrt()
        if self.options.device is None:
            raise EngineError("backend 'tensorrt' needs a GPU, and none is visible to this rank "
                              "(check CUDA_VISIBLE_DEVICES and the job's GPU request)")
        from .cudabuffers import BufferRing, CudaContext

        self.cuda = CudaContext(self.options.device)
        info = inspect_model(self.model)
        self.input_name = info.input_name
        self.input_shape = info.input_shape
        chw = tuple(info.input_shape[1:])
        batch = self.options.batch_size
        self.engine = self.loader()
        self.compute_ms = 0.0  # GPU time of the engine itself, from CUDA events
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [self.input_name]:
            raise EngineError(f"{self.model}: plan inputs {inputs}, expected [{self.input_name!r}]")
        self.output_names = [n for n in names if n not in inputs]
        self.context.set_input_shape(self.input_name, (batch, *chw))
        dtype = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.ring = BufferRing({self.input_name: ((batch, *chw), dtype[self.input_name])},
                               {n: (tuple(self.context.get_tensor_shape(n)), dtype[n]) for n in self.output_names})
        self.device_name = f"cuda:{self.options.device} {self.cuda.name}"

    def _launch(self, slot, stream) -> None:  # noqa: ANN001 - cudabuffers.Slot, pycuda Stream
        self.context.set_input_shape(self.input_name, (slot.rows, *self.input_shape[1:]))
        for name, dev in (*slot.dev_in.items(), *slot.dev_out.items()):
            self.context.set_tensor_address(name, int(dev))
        if not self.context.execute_async_v3(stream.handle):
            raise EngineError("TensorRT failed to enqueue the batch; see its log above")

    def _submit(self, batch: Any) -> object:
        """A host array or a device array (`__cuda_array_interface__`): the ring copies either kind in."""
        return self.ring.submit({self.input_name: batch}, self._launch)

    def _collect(self, token: object) -> Outputs:
        outputs = Outputs(self.ring.collect(token))
        h2d, compute, d2h = token.times_ms()
        self.h2d_seconds += h2d / 1e3
        self.d2h_seconds += d2h / 1e3
        self.compute_ms += compute
        return outputs

    def _infer(self, batch: Any) -> Outputs:
        return self._collect(self._submit(batch))

    def _deactivate(self) -> None:
        self.ring.close()
        del self.context, self.engine
        self.loader.runtime = None  # the runtime outlives no engine it deserialized
        self.cuda.close()
