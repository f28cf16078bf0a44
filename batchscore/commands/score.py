"""`batchscore score` (also what runs with no command): score a job's images on every rank."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..config import DECODE_MODES, GPU_DECODERS, REMOVED
from .jobargs import add_job_arguments, job_from_args

if TYPE_CHECKING:
    from mpi4py import MPI


class Removed(argparse.Action):
    """A removed option (config.REMOVED): exit 2 with one line that says what to do instead."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001 - argparse's
        parser.exit(2, f"{parser.prog}: error: {REMOVED[self.dest]}\n")


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = add_job_arguments(p)
    g.add_argument("--decode", choices=DECODE_MODES,
                   help="where images are decoded: gpu = on the rank's GPU (torch/tensorrt backend), "
                        "auto = gpu when it works here, else cpu")
    g.add_argument("--gpu-decoder", choices=GPU_DECODERS,
                   help="GPU decode library: nvimgcodec (hardware JPEG decoder, then CUDA), torchvision (nvJPEG), "
                        "auto = nvimgcodec when installed and working, else torchvision")
    g.add_argument("--gpu-decode-threads", dest="gpu_decode_threads", action=Removed, help=argparse.SUPPRESS)
    p.add_argument("--incremental", action="store_true", default=None,
                   help="score only images new or changed since the last --incremental run into OUTPUT: "
                        "results in OUTPUT/runs/<UTC time>/, cumulative manifest in OUTPUT/index.h5")


def run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    """Score images with a model on every MPI rank; rank 0 writes scores.h5 and summary.json."""
    from ..runner import run as run_job

    job = job_from_args(args).with_overrides(incremental=args.incremental)
    if getattr(args, "sample", False) and args.output is None:
        job = job.with_overrides(overwrite=True)  # the bundled sample's own result: rerunning it replaces it
    run_job(job, comm)
    return 0
