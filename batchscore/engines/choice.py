"""Which backend a job runs on, and the job's settings settled for that backend's device.

`resolve` is the one place that turns a job's `backend` (maybe "auto") into a concrete backend, checks that
its packages are installed and settles the batch size and compile mode for where its engine runs; scoring,
accuracy, bench and the engine build all call it. Packages are found, not imported, so a check costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec

from ..config import ConfigError, Job
from ..gpu import visible_gpu_count

#: backends that drive a GPU: each rank binds one before creating its engine.
GPU_BACKENDS = frozenset({"torch", "tensorrt"})
#: the packages each backend imports (what `auto` looks for, and what doctor says is missing)
BACKEND_PACKAGES = {"tensorrt": ("tensorrt", "pycuda"), "torch": ("torch", "onnx2torch"),
                    "onnxruntime": ("onnxruntime",)}
#: what to add after the pip command for a package a requested backend lacks
PIP_NOTES = {"torch": " (torch: the build for your CUDA, see pytorch.org)"}
#: backends with no run on any machine this project is tested on: chosen only by name, and said so
UNVERIFIED = {"tensorrt": "backend 'tensorrt' is unverified: this project has never executed it on any "
                          "machine; check its results against backend = \"torch\" or \"onnxruntime\""}


@dataclass(frozen=True)
class Resolved:
    """A job's backend, why it was chosen, and the job with its settings settled for that backend's device."""

    backend: str
    reason: str
    job: Job
    gpu: bool  # whether the engine runs on a GPU here


def installed(backend: str) -> bool:
    """Whether every package the backend imports is installed (found, not imported)."""
    return all(find_spec(package) for package in BACKEND_PACKAGES[backend])


def runs_on_gpu(backend: str) -> bool:
    """Whether `backend`'s engines will run on a GPU here (a GPU backend and a visible GPU), without importing torch."""
    return backend in GPU_BACKENDS and visible_gpu_count() > 0


def require_packages(backend: str) -> None:
    """ConfigError naming the packages `backend` needs that are not installed, and the pip command."""
    missing = [package for package in BACKEND_PACKAGES[backend] if not find_spec(package)]
    if missing:
        raise ConfigError(f"backend '{backend}' needs {' and '.join(missing)}, not installed here: pip install "
                          f"{' '.join(missing)}{''.join(PIP_NOTES.get(m, '') for m in missing)}, "
                          "or set backend = \"onnxruntime\"")


def choose_backend(requested: str) -> tuple[str, str]:
    """Resolve "auto" to a concrete backend; returns (backend, reason) for the summary.

    "auto" picks only backends that have run on the project's machines: torch where PyTorch sees a GPU, else
    ONNX Runtime on the CPU. TensorRT runs only when the job names it, and its reason says it is unverified."""
    if requested != "auto":
        return requested, "requested in the job" + (f"; {UNVERIFIED[requested]}" if requested in UNVERIFIED else "")
    gpus = visible_gpu_count()
    why = "no GPU visible" if not gpus else f"{gpus} GPU(s) visible"
    if installed("torch"):
        import torch  # only when it may be the answer: whether this PyTorch build sees a usable GPU

        if torch.cuda.is_available():
            return "torch", f"auto: {why}; PyTorch sees a GPU"
        why += ", PyTorch sees no GPU"
    else:
        why += ", PyTorch/onnx2torch not installed"
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return "onnxruntime", (f"auto: {why}; ONNX Runtime (its CUDA provider is installed, "
                               "but the onnxruntime backend runs on the CPU)")
    return "onnxruntime", f"auto: {why}; ONNX Runtime on the CPU"


def resolve(job: Job, gpu: bool | None = None) -> Resolved:
    """The job's backend (ConfigError when its packages are missing) and the job settled for its device.

    `gpu`: where the engines will run, when the caller decides it (accuracy runs its engines on the CPU);
    None: on a GPU where the backend drives one and a GPU is visible."""
    backend, reason = choose_backend(job.backend)
    require_packages(backend)
    on_gpu = runs_on_gpu(backend) if gpu is None else gpu
    return Resolved(backend, reason, job.settled(on_gpu), on_gpu)
