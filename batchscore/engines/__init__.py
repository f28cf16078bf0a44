"""Inference engines behind one small interface.

An engine has a fixed lifecycle (`activate` → `infer`* → `deactivate`, or use it as a context
manager) kept in this base class: state checks, input validation and per-batch timing live here,
adapters override only the `_activate`/`_infer`/`_deactivate` hooks. Adapters are imported by
name on demand, so `tensorrt`, `pycuda` and `torch` are needed only by the backend that uses them.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np

#: backend name -> "module:Class", imported only when chosen.
ADAPTERS = {
    "onnxruntime": "batchscore.engines.onnxrt:OnnxRuntimeEngine",
    "torch": "batchscore.engines.torch_backend:TorchEngine",
    "tensorrt": "batchscore.engines.tensorrt_backend:TensorRTEngine",
}
#: backends that drive a GPU: each rank binds one before creating its engine.
GPU_BACKENDS = frozenset({"torch", "tensorrt"})
#: the kinds of engine-cache entry this version builds and loads (the key's "kind"); others are leftovers
TENSORRT_KIND, TORCH_KIND = "tensorrt-plan", "torch-aoti"
ENGINE_KINDS = frozenset({TENSORRT_KIND, TORCH_KIND})
#: output names under which an engine built with EngineOptions.top_k returns the first output's top-k (softmax
#: probabilities, best first, ties in class order) when it computed them on its device (runner.batch_topk)
TOPK_INDEX, TOPK_SCORE = "__topk_index__", "__topk_score__"
#: the packages each backend imports (what `auto` looks for, and what doctor says is missing)
BACKEND_PACKAGES = {"tensorrt": ("tensorrt", "pycuda"), "torch": ("torch", "onnx2torch"),
                    "onnxruntime": ("onnxruntime",)}
#: what to add after the pip command for a package a requested backend lacks
PIP_NOTES = {"torch": " (torch: the build for your CUDA, see pytorch.org)"}


#: a translation unit that needs libstdc++'s locale code, as the package's wrapper (std::regex) does
LIBSTDCXX_PROBE = "#include <locale>\nbool probe() { return std::has_facet<std::ctype<char>>(std::locale()); }\n"


@dataclass(frozen=True)
class Compiler:
    """The C++ compiler that links a compiled torch package, and why it was chosen."""

    name: str  # as asked for: $CXX, g++ or c++
    path: str | None  # None: not on PATH
    static_libstdcxx: bool | None = None  # whether it copies libstdc++ into the libraries it links; None: unknown
    note: str = ""  # compilers passed over, or the risk of the one chosen; said where the compiler is reported


def links_libstdcxx_statically(path: str) -> bool | None:
    """Whether the compiler at `path` puts libstdc++ itself into a shared library it links (as a wrapper script
    adding -static-libstdc++ does); None where that cannot be told (no nm, or the probe does not build)."""
    nm = shutil.which("nm")
    if nm is None:
        return None
    with tempfile.TemporaryDirectory(prefix="batchscore-cxx-probe-") as folder:
        source, library = Path(folder, "probe.cpp"), Path(folder, "probe.so")
        source.write_text(LIBSTDCXX_PROBE)
        try:
            subprocess.run([path, "-shared", "-fPIC", "-o", str(library), str(source)], capture_output=True,
                           timeout=120, check=True)
            symbols = subprocess.run([nm, "-D", "--defined-only", str(library)], capture_output=True, text=True,
                                     timeout=60, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    return "_ZNSt6locale7classicEv" in symbols  # std::locale::classic(), defined in libstdc++ itself


def cxx_compiler() -> Compiler:
    """$CXX, g++ or c++: the first that links libstdc++ as a shared library, else the first found.

    The package's wrapper library uses std::regex, hence libstdc++'s locale code. A compiler that copies
    libstdc++ into it (some sites' $CXX is such a wrapper) gave a library with its own locale state beside
    the process's, and every package built so crashed on load in std::regex; the system g++ on the same
    machines gave packages that loaded (docs/dev/decisions/0010).
    """
    found, cxx = [], os.environ.get("CXX")
    missing = [f"CXX={cxx} is not on PATH"] if cxx and not shutil.which(cxx) else []
    for name in dict.fromkeys(filter(None, (cxx, "g++", "c++"))):
        path = shutil.which(name)
        if path and os.path.realpath(path) not in {os.path.realpath(c.path) for c in found}:
            found.append(Compiler(name, path, links_libstdcxx_statically(path)))
            if found[-1].static_libstdcxx is False:
                break
    if not found:
        return Compiler(cxx or "g++", None)
    chosen = found[-1] if found[-1].static_libstdcxx is False else found[0]
    passed = [f"not {c.path}: " + ("it links libstdc++ statically" if c.static_libstdcxx else "its probe did not link")
              for c in found[:found.index(chosen)]]
    risk = ["it links libstdc++ statically: its packages may crash on load (the build's load check catches that)"
            ] if chosen.static_libstdcxx else []
    return Compiler(chosen.name, chosen.path, chosen.static_libstdcxx, "; ".join(missing + passed + risk))


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """This CPU's instruction-set flags, hashed, for the torch package's cache key (doctor compares it too):
    Inductor compiles the wrapper with -march=native, so a node with other flags builds its own package
    instead of loading one that may use instructions its CPU lacks (a crash no error handling catches)."""
    try:
        flags = next((line.split(":", 1)[1] for line in cpuinfo.read_text().splitlines()
                      if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:16] if flags else \
        f"{platform.machine()} {platform.processor()}"


def installed(backend: str) -> bool:
    """Whether every package the backend imports is installed (found, not imported)."""
    return all(find_spec(package) for package in BACKEND_PACKAGES[backend])


class EngineError(RuntimeError):
    """The engine cannot be created or used; the message says what to install or change."""


@dataclass(frozen=True)
class EngineOptions:
    """What every adapter may use: batch size for buffers/profiles, CPU threads, GPU index.

    GPU adapters also use the precision to run at, the compile mode ("eager", "cudagraph",
    "compiled") and the folder where built plans/compiled artifacts are cached (None: default).
    top_k > 0 lets an adapter compute the first output's top-k on its GPU (TOPK_INDEX, TOPK_SCORE), so the
    rank's loop does not (the torch adapter on a GPU does; others leave it to the loop).
    """

    batch_size: int = 32
    threads: int = 0
    device: int | None = None
    precision: str = "fp32"
    compile: str = "eager"
    cache_dir: Path | None = None
    top_k: int = 0


class Engine:
    """Base class: one model, one device, run batch by batch."""

    name = "engine"
    #: whether `infer`/`infer_iter` also take a batch already on the engine's GPU (a torch CUDA tensor)
    device_batches = False

    def __init__(self, model: Path, options: EngineOptions = EngineOptions()) -> None:
        self.model = Path(model)
        self.options = options
        self.active = False
        self.input_name = ""
        self.input_shape: tuple[int | str, ...] = ()
        self.output_names: list[str] = []
        self.device_name = "cpu"
        self.note = ""  # what activation chose that the rank's log should say (the torch adapter: what it fused)
        self.infer_seconds = 0.0
        # Parts of infer_seconds that a GPU adapter spent copying in and out (it adds to them).
        self.h2d_seconds = 0.0
        self.d2h_seconds = 0.0
        self.batches = 0

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

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch (N, C, H, W) float32, N ≤ batch_size; returns host arrays by output name."""
        self._check(batch)
        start = time.perf_counter()
        outputs = self._infer(batch)
        self.infer_seconds += time.perf_counter() - start
        self.batches += 1
        return outputs

    def infer_iter(self, batches: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
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

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """One batch, start to finish; asynchronous adapters define it as `_collect(_submit(batch))`."""
        raise NotImplementedError

    def _submit(self, batch: np.ndarray) -> object:
        """Start a batch and return a token for `_collect`; by default runs it to the end at once."""
        return self._infer(batch)

    def _collect(self, token: object) -> dict[str, np.ndarray]:
        return token  # type: ignore[return-value] - the default token is the outputs

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


def runs_on_gpu(backend: str) -> bool:
    """Whether `backend`'s engines will run on a GPU here (a GPU backend and a visible GPU), without importing torch."""
    from ..gpu import visible_gpu_count

    return backend in GPU_BACKENDS and visible_gpu_count() > 0


def require_packages(backend: str) -> None:
    """ConfigError naming the packages `backend` needs that are not installed, and the pip command.

    Found, not imported: called while planning, before anything is written.
    """
    missing = [package for package in BACKEND_PACKAGES[backend] if not find_spec(package)]
    if missing:
        from ..config import ConfigError

        raise ConfigError(f"backend '{backend}' needs {' and '.join(missing)}, not installed here: pip install "
                          f"{' '.join(missing)}{''.join(PIP_NOTES.get(m, '') for m in missing)}, "
                          "or set backend = \"onnxruntime\"")


def choose_backend(requested: str) -> tuple[str, str]:
    """Resolve "auto" to a concrete backend; returns (backend, reason) for the summary."""
    if requested != "auto":
        return requested, "requested in the job"
    from ..gpu import visible_gpu_count

    gpus = visible_gpu_count()
    if gpus and installed("tensorrt"):
        return "tensorrt", f"auto: TensorRT and pycuda installed, {gpus} GPU(s) visible"
    why = "no GPU visible" if not gpus else "TensorRT/pycuda not installed"
    if installed("torch"):
        from .torch_backend import cuda_available  # imports torch: only when it may be the answer

        if cuda_available():
            return "torch", f"auto: {why}; PyTorch sees a GPU"
        why += ", PyTorch sees no GPU"
    else:
        why += ", PyTorch/onnx2torch not installed"
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return "onnxruntime", (f"auto: {why}; ONNX Runtime (its CUDA provider is installed, "
                               "but the onnxruntime backend runs on the CPU)")
    return "onnxruntime", f"auto: {why}; ONNX Runtime on the CPU"
