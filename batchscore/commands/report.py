"""`batchscore report`: PNG plots from summary and bench JSON files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpi4py import MPI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", type=Path, nargs="+", metavar="JSON", help="summary.json and/or bench JSON files")
    p.add_argument("--out", type=Path, default=Path("plots"), metavar="DIR", help="folder for the PNGs (default: plots)")


def run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    """PNG plots from summary/bench JSON: images/s vs batch size per precision, and vs rank count.

    Needs matplotlib (pip install 'batchscore[plots]').
    """
    from ..plots import report

    if comm.rank == 0:
        print(report(args.files, args.out), flush=True)
    return 0
