"""Inference engines behind one small interface: loaders build or load, engines run.

An engine has a fixed lifecycle (`activate` → `infer`* → `deactivate`, or use it as a context
manager) kept in this base class: state checks, input validation and per-batch timing live here,
adapters override only the `_activate`/`_infer`/`_deactivate` hooks. What an engine runs comes from a
loader handed to it (loaders.py, as Polygraphy's `TrtRunner(EngineFromNetwork(...))`): a cheap callable
that builds or loads the session, module, package or plan, through the engine cache where building is
slow, so that `build` calls loaders only and activation is short. Adapters are imported by name on
demand, so `tensorrt`, `pycuda` and `torch` are needed only by the backend that uses them.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .choice import (BACKEND_PACKAGES, GPU_BACKENDS, UNVERIFIED, Resolved, choose_backend, installed,
                     require_packages, resolve, runs_on_gpu)

__all__ = ["BACKEND_PACKAGES", "GPU_BACKENDS", "UNVERIFIED", "Engine", "EngineError", "EngineOptions", "Outputs",
           "Resolved", "TopK", "choose_backend", "create_engine", "installed", "prebuild", "require_packages",
           "resolve", "runs_on_gpu"]

#: backend name -> "module:Class", imported only when chosen.
ADAPTERS = {
    "onnxruntime": "batchscore.engines.onnxrt:OnnxRuntimeEngine",
    "torch": "batchscore.engines.torch_backend:TorchEngine",
    "tensorrt": "batchscore.engines.tensorrt_backend:TensorRTEngine",
}
#: the kinds of engine-cache entry this version builds and loads (the key's "kind"); others are leftovers
TENSORRT_KIND, TORCH_KIND, TORCH_MODULE_KIND = "tensorrt-plan", "torch-aoti", "torch-module"
ENGINE_KINDS = frozenset({TENSORRT_KIND, TORCH_KIND, TORCH_MODULE_KIND})


@dataclass(frozen=True)
class TopK:
    """The first output's k best classes per row, best first (equal probabilities in class order), as an
    engine computed them on its device: int32 class indices and float32 softmax probabilities, (rows, k) each."""

    index: np.ndarray
    score: np.ndarray


class Outputs(dict):
    """An engine's outputs of one batch, host arrays by output name, and the top-k if the engine computed it
    (EngineOptions.top_k; None: the caller computes it from the first output)."""

    def __init__(self, arrays: dict[str, np.ndarray] | Iterable = (), topk: TopK | None = None) -> None:
        super().__init__(arrays)
        self.topk = topk


class EngineError(RuntimeError):
    """The engine cannot be created or used; the message says what to install or change."""


@dataclass(frozen=True)
class EngineOptions:
    """What every adapter may use: batch size for buffers/profiles, CPU threads, GPU index.

    GPU adapters also use the precision to run at, the compile mode ("eager", "cudagraph",
    "compiled") and the engine cache folder (plans, packages, converted modules; None: the default).
    top_k > 0 lets an adapter compute the first output's top-k on its GPU (`Outputs.topk`), so the rank's
    loop does not (the torch adapter on a GPU does; others leave it to the loop).
    """

    batch_size: int = 32
    threads: int = 0
    device: int | None = None
    precision: str = "fp32"
    compile: str = "eager"
    cache_dir: Path | None = None
    top_k: int = 0


class Engine:
    """Base class: one model, one device, run batch by batch, from what its loader gives on activation."""

    name = "engine"
    #: whether `infer`/`infer_iter` also take a batch already on the engine's GPU (a torch CUDA tensor)
    device_batches = False

    def __init__(self, model: Path, options: EngineOptions = EngineOptions(),
                 loader: Callable[[], object] | None = None) -> None:
        self.model = Path(model)
        self.options = options
        self.loader = loader if loader is not None else self.default_loader(self.model, options)
        self.active = False
        self.input_name = ""
        self.input_shape: tuple[int | str, ...] = ()
        self.output_names: list[str] = []
        self.device_name = "cpu"
        self.start_phases: dict[str, float] = {}  # seconds per start step (adapter import, activation steps)
        self.note = ""  # what activation chose that the rank's log should say (the torch adapter: what it fused)
        self.infer_seconds = 0.0
        # Parts of infer_seconds that a GPU adapter spent copying in and out (it adds to them).
        self.h2d_seconds = 0.0
        self.d2h_seconds = 0.0
        self.batches = 0

    @staticmethod
    def default_loader(model: Path, options: EngineOptions) -> Callable[[], object]:
        """The loader this adapter runs `model` from, for these options (what `loader()` returns)."""
        raise NotImplementedError

    @staticmethod
    def prebuild(loader: Callable[[], object]) -> None:
        """Call `loader` outside any engine, as `build` does (an adapter whose loader needs more overrides it)."""
        loader()

    @property
    def cache_status(self) -> str:
        """How the loader got what this engine runs: the engine cache's "hit", "waited", "built", "rebuilt",
        or "none" where nothing is cached."""
        return getattr(self.loader, "status", "none")

    @property
    def setup_seconds(self) -> float:
        """Seconds the loader spent building or loading (waiting included)."""
        return getattr(self.loader, "seconds", 0.0)

    def stage_seconds(self) -> dict[str, float]:
        """Host→device, compute and device→host seconds so far, for the per-stage report."""
        compute = self.infer_seconds - self.h2d_seconds - self.d2h_seconds
        return {"h2d": self.h2d_seconds, "infer": max(0.0, compute), "d2h": self.d2h_seconds}

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

    def infer(self, batch: np.ndarray) -> Outputs:
        """Run one batch (N, C, H, W) float32, N ≤ batch_size; returns host arrays by output name."""
        self._check(batch)
        start = time.perf_counter()
        outputs = self._infer(batch)
        self.infer_seconds += time.perf_counter() - start
        self.batches += 1
        return outputs

    def infer_iter(self, batches: Iterable[np.ndarray]) -> Iterator[Outputs]:
        """Outputs of each batch, in order; GPU adapters copy batch i+1 in while batch i computes.

        A batch may also be on the GPU already (GPU decode) where the adapter has `device_batches`.
        """
        pending = None
        for batch in batches:
            self._check(batch)
            start = time.perf_counter()
            token = self._submit(batch)
            outputs = self._collect(pending) if pending is not None else None
            self.infer_seconds += time.perf_counter() - start
            pending = token
            if outputs is not None:
                self.batches += 1
                yield outputs
        if pending is not None:
            start = time.perf_counter()
            outputs = self._collect(pending)
            self.infer_seconds += time.perf_counter() - start
            self.batches += 1
            yield outputs

    def _check(self, batch: np.ndarray) -> None:
        if not self.active:
            raise EngineError(f"{self.name} engine used before activate()")
        float32 = batch.dtype == np.float32 if isinstance(batch, np.ndarray) else (
            self.device_batches and str(batch.dtype) == "torch.float32")
        if batch.ndim != 4 or not float32:
            raise EngineError(f"expected a float32 NCHW batch, got {batch.dtype} {tuple(batch.shape)}")
        if not 1 <= len(batch) <= self.options.batch_size:
            raise EngineError(f"batch of {len(batch)} outside 1..{self.options.batch_size}")

    def _activate(self) -> None:
        raise NotImplementedError

    def _infer(self, batch: np.ndarray) -> Outputs:
        """One batch, start to finish; asynchronous adapters define it as `_collect(_submit(batch))`."""
        raise NotImplementedError

    def _submit(self, batch: np.ndarray) -> object:
        """Start a batch and return a token for `_collect`; by default runs it to the end at once."""
        return self._infer(batch)

    def _collect(self, token: object) -> Outputs:
        return token  # type: ignore[return-value] - the default token is the outputs

    def _deactivate(self) -> None:
        """Free what `_activate` built; nothing by default."""


def _adapter(backend: str) -> type[Engine]:
    try:
        module_name, cls_name = ADAPTERS[backend].split(":")
    except KeyError:
        raise EngineError(f"unknown backend {backend!r}; known: {', '.join(ADAPTERS)}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(f"backend {backend!r} needs a package that is not installed: {exc}") from None
    return getattr(module, cls_name)


def prebuild(backend: str, model: Path, options: EngineOptions) -> Callable[[], object]:
    """Build (or find) the cache entry the named backend's engine would load for `options`, running nothing;
    returns the loader called, whose `status` and `seconds` say how it went."""
    adapter = _adapter(backend)
    called = adapter.default_loader(Path(model), options)
    adapter.prebuild(called)
    return called


def create_engine(backend: str, model: Path, options: EngineOptions,
                  loader: Callable[[], object] | None = None) -> Engine:
    """An (inactive) engine of the named backend, run from `loader` (default: the backend's own for `model`);
    EngineError names the missing package."""
    start = time.perf_counter()
    adapter = _adapter(backend)  # imports the adapter's packages (torch: seconds) on first use in the process
    engine = adapter(model, options, loader)
    engine.start_phases["import"] = round(time.perf_counter() - start, 3)
    return engine
