"""`batchscore export`: a finished run's scores.h5 as a table file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpi4py import MPI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["parquet"], default="parquet", help="table format (default: parquet)")
    p.add_argument("results", type=Path, metavar="RESULTS_DIR", help="a finished run's output folder (scores.h5)")
    p.add_argument("--output", type=Path, default=None, metavar="FILE",
                   help="file to write (default: RESULTS_DIR/scores.parquet)")


def run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    """Export scores.h5 as a table (one row per image) that joins a data team's tables; needs pyarrow."""
    from ..export import export_parquet

    if comm.rank == 0:
        print(export_parquet(args.results, args.output), flush=True)
    return 0
