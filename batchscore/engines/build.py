"""Build a job's engines into the engine cache ahead of scoring, calling loaders only (nothing is run).

Run it like the job (same launcher, same ranks per node), e.g. as a short job before the big one: the first
rank per node and key builds each entry (the converted torch module, the AOTInductor package, the TensorRT
plan), the others wait and find it, and scoring then starts warm.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from ..config import ConfigError, Job
from ..gpu import bind_gpu
from ..model import ModelError, inspect_model
from ..precision import prepare_model, scored_precision
from . import GPU_BACKENDS, EngineOptions, prebuild, resolve

if TYPE_CHECKING:
    from mpi4py import MPI


def build(job: Job, comm: MPI.Comm) -> list[dict]:
    """Every rank binds its GPU (GPU backends) and calls its engine's loader; rank 0 returns a row per rank
    (rank, host, backend, reason, device, cache status, seconds, model), the other ranks an empty list.

    ConfigError on every rank for a job that cannot run (rank 0 decides the backend and the model file)."""
    decided, error = None, ""
    if comm.rank == 0:
        try:
            resolved = resolve(job)
            try:
                metadata = inspect_model(job.model).metadata
            except ModelError as exc:
                raise ConfigError(str(exc)) from None
            settled = resolved.job.with_overrides(precision=scored_precision(job, metadata))  # a quantized model's own
            decided = (resolved.backend, resolved.reason, settled, prepare_model(settled))
        except ConfigError as exc:
            error = str(exc)
    decided, error = comm.bcast((decided, error), root=0)
    if error:
        raise ConfigError(error)
    backend, reason, job, model = decided
    binding = bind_gpu(comm, job.share_gpus) if backend in GPU_BACKENDS else None
    device = binding.index if binding else None
    options = EngineOptions(job.batch_size, job.threads, device=device, precision=job.precision,
                            compile=job.compile, cache_dir=job.cache_dir, top_k=job.top_k)
    called = prebuild(backend, model, options)
    row = {"rank": comm.rank, "host": socket.gethostname(), "backend": backend, "reason": reason,
           "device": "cpu" if device is None else f"cuda:{device}", "cache": getattr(called, "status", "none"),
           "seconds": round(getattr(called, "seconds", 0.0), 2), "model": str(model)}
    return comm.gather(row, root=0) or []
