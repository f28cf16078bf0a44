"""Inference engines behind one small interface.

An engine has a fixed lifecycle (`activate` → `infer`* → `deactivate`, or use it as a context
manager) kept in this base class: state checks, input validation and per-batch timing live here,
adapters override only the `_activate`/`_infer`/`_deactivate` hooks. Adapters are imported by
name on demand, so `tensorrt`, `pycuda` and `torch` are needed only by the backend that uses them.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: backend name -> "module:Class", imported only when chosen.
ADAPTERS = {
    "onnxruntime": "batchscore.engines.onnxrt:OnnxRuntimeEngine",
}


class EngineError(RuntimeError):
    """The engine cannot be created or used; the message says what to install or change."""


@dataclass(frozen=True)
class EngineOptions:
    """What every adapter may use: batch size for buffers/profiles, CPU threads, GPU index."""

    batch_size: int = 32
    threads: int = 0
    device: int | None = None


class Engine:
    """Base class: one model, one device, run batch by batch."""

    name = "engine"

    def __init__(self, model: Path, options: EngineOptions = EngineOptions()) -> None:
        self.model = Path(model)
        self.options = options
        self.active = False
        self.input_name = ""
        self.input_shape: tuple[int | str, ...] = ()
        self.output_names: list[str] = []
        self.device_name = "cpu"
        self.infer_seconds = 0.0
        self.batches = 0

    def activate(self) -> "Engine":
        if self.active:
            raise EngineError(f"{self.name} engine is already active")
        self._activate()
        self.active = True
        return self

    def deactivate(self) -> None:
        if self.active:
            self._deactivate()
            self.active = False

    def __enter__(self) -> "Engine":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch (N, C, H, W) float32, N ≤ batch_size; returns host arrays by output name."""
        if not self.active:
            raise EngineError(f"{self.name} engine used before activate()")
        if batch.ndim != 4 or batch.dtype != np.float32:
            raise EngineError(f"expected a float32 NCHW batch, got {batch.dtype} {batch.shape}")
        if not 1 <= len(batch) <= self.options.batch_size:
            raise EngineError(f"batch of {len(batch)} outside 1..{self.options.batch_size}")
        start = time.perf_counter()
        outputs = self._infer(batch)
        self.infer_seconds += time.perf_counter() - start
        self.batches += 1
        return outputs

    def _activate(self) -> None:
        raise NotImplementedError

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _deactivate(self) -> None:
        """Free what `_activate` built; nothing by default."""


def create_engine(backend: str, model: Path, options: EngineOptions) -> Engine:
    """An (inactive) engine of the named backend; EngineError names the missing package."""
    try:
        module_name, cls_name = ADAPTERS[backend].split(":")
    except KeyError:
        raise EngineError(f"unknown backend {backend!r}; known: {', '.join(ADAPTERS)}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(f"backend {backend!r} needs a package that is not installed: {exc}") from None
    return getattr(module, cls_name)(model, options)


def choose_backend(requested: str) -> tuple[str, str]:
    """Resolve "auto" to a concrete backend; returns (backend, reason) for the summary."""
    if requested != "auto":
        return requested, "requested in the job"
    return "onnxruntime", "auto: ONNX Runtime on the CPU (no GPU backend in this version)"
