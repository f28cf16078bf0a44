"""`batchscore build`: prebuild a job's engines into the engine cache, launched like the job itself."""

from __future__ import annotations

import argparse
import socket
from typing import TYPE_CHECKING

from .jobargs import add_job_arguments, job_from_args

if TYPE_CHECKING:
    from mpi4py import MPI

    from ..config import Job


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_job_arguments(p)


def prebuild(job: Job, comm: MPI.Comm) -> list[dict]:
    """Every rank binds its GPU and builds (or loads) the engine the job will use; rows on rank 0.

    The first rank per node and cache key builds, the others wait and load, and scoring then starts warm.
    """
    from ..comm import cores_for_rank, placement
    from ..config import ConfigError
    from ..engines import choose_backend, require_packages, runs_on_gpu
    from ..model import ModelError, inspect_model
    from ..precision import prepare_model, scored_precision
    from ..runner import bind, open_engine

    decided, error = None, ""
    if comm.rank == 0:
        try:
            backend, reason = choose_backend(job.backend)
            require_packages(backend)
            try:
                metadata = inspect_model(job.model).metadata
            except ModelError as exc:
                raise ConfigError(str(exc)) from None
            job = job.with_overrides(precision=scored_precision(job, metadata))  # a quantized model's own
            decided = (backend, reason, prepare_model(job), job.precision)
        except ConfigError as exc:
            error = str(exc)
    decided, error = comm.bcast((decided, error), root=0)
    if error:
        raise ConfigError(error)
    backend, reason, model, precision = decided
    job = job.with_overrides(precision=precision).settled(runs_on_gpu(backend))
    binding = bind(job, backend, comm)
    engine = open_engine(job, backend, model, cores_for_rank(placement(comm).local_size),
                         binding.index if binding else None, comm.rank)
    row = {"rank": comm.rank, "host": socket.gethostname(), "backend": backend, "reason": reason,
           "device": engine.device_name, "cache": getattr(engine, "cache_status", "none"),
           "seconds": round(getattr(engine, "setup_seconds", 0.0), 2), "model": str(model)}
    engine.deactivate()
    return comm.gather(row, root=0) or []


def run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    """Prebuild the GPU engines of a job (TensorRT plans, compiled PyTorch) into the engine cache.

    Launch it like the job itself (same launcher, same ranks per node), for example as a short job
    before the big one: one rank per node builds each engine, the others wait and load it, and the
    scoring run then starts in seconds. Prints each rank's device and whether it built or loaded.
    """
    for r in prebuild(job_from_args(args), comm):
        print(f"rank {r['rank']} {r['host']} {r['device']}: {r['backend']} engine {r['cache']} "
              f"in {r['seconds']:.1f} s ({r['model']})", flush=True)
    return 0
