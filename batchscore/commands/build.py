"""`batchscore build`: prebuild a job's engines into the engine cache, launched like the job itself."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .jobargs import add_job_arguments, job_from_args

if TYPE_CHECKING:
    from mpi4py import MPI


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_job_arguments(p)


def run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    """Prebuild the GPU engines of a job (TensorRT plans, compiled PyTorch) into the engine cache.

    Launch it like the job itself (same launcher, same ranks per node), for example as a short job
    before the big one: one rank per node builds each engine, the others wait and load it, and the
    scoring run then starts in seconds. Prints each rank's device and whether it built or loaded.
    """
    from ..engines.build import build

    for r in build(job_from_args(args), comm):
        print(f"rank {r['rank']} {r['host']} {r['device']}: {r['backend']} engine {r['cache']} "
              f"in {r['seconds']:.1f} s ({r['model']})", flush=True)
    return 0
