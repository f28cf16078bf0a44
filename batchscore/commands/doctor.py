"""`batchscore doctor`: check the environment (and a job) the way the job will be launched."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpi4py import MPI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", type=Path, default=None, metavar="FILE",
                   help="also check this job: inputs, model, output folder, engine cache")


def run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    """Check MPI, launcher, GPU binding, backends, decoders (and a job); prints the fix for each problem.

    Run it the way the job will run (same launcher, same number of ranks). Exit 0 when nothing FAILs.
    """
    from ..doctor import doctor

    return doctor(comm, args.job)
