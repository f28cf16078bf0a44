"""`batchscore accuracy`: top-1/top-5 of each precision against FP32 on a labelled archive."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import PRECISIONS, ConfigError
from .jobargs import add_job_arguments, job_from_args

if TYPE_CHECKING:
    from mpi4py import MPI


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_job_arguments(p)
    p.add_argument("--precisions", default="fp32,fp16,int8", metavar="LIST",
                   help="comma-separated precisions to compare with fp32 (default: fp32,fp16,int8)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="where to write the table as JSON (default: OUTPUT/accuracy.json)")


def run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    """Top-1/top-5 of each precision against FP32 on a labelled archive (images calibration never saw).

    Prints the table (with top-1 agreement and the largest probability difference) and saves it as JSON;
    runs on every MPI rank like scoring, rank 0 gathers.
    """
    from ..accuracy import run_accuracy

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ConfigError(f"--precisions: unknown {unknown}; choose from {', '.join(PRECISIONS)}")
    run_accuracy(job_from_args(args), precisions, args.json, comm)
    return 0
