"""`batchscore quantize`: write an FP16 or INT8 variant of an FP32 ONNX model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import CALIB_METHODS, PRECISIONS, ConfigError, load_job

if TYPE_CHECKING:
    from mpi4py import MPI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, required=True, metavar="ONNX", help="FP32 source model")
    p.add_argument("--precision", choices=PRECISIONS[1:], required=True)
    p.add_argument("--output", type=Path, required=True, metavar="ONNX", help="variant to write")
    p.add_argument("--calib", type=Path, nargs="+", metavar="INPUT",
                   help="int8: folder, .tar, .h5 or list file(s) to draw calibration images from")
    p.add_argument("--calib-images", type=int, default=300, metavar="N",
                   help="int8: images in the seeded calibration sample (default: 300)")
    p.add_argument("--method", choices=CALIB_METHODS, default="entropy",
                   help="int8: calibration method (default: entropy)")
    p.add_argument("--job", type=Path, default=None, metavar="FILE",
                   help="take the [preprocess] settings (and hdf5_dataset) from this job file")


def run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    """Write an FP16 or INT8 (symmetric Q/DQ, calibrated on images) variant of an FP32 ONNX model.

    INT8 calibration images go through the job's preprocessing; the measured ranges are saved next to
    OUTPUT and reused when the same model, images and method are quantised again.
    """
    from ..accuracy import on_root
    from ..precision import Calibration, quantize, seeded_sample
    from ..preprocess import Preprocess
    from ..sources import SourceError, list_items

    def make() -> dict[str, str]:
        calibration = None
        if args.precision == "int8":
            if not args.calib:
                raise ConfigError("int8 needs calibration images: give --calib INPUT")
            job = load_job(args.job) if args.job else None
            try:
                items = list_items(tuple(args.calib), job.hdf5_dataset if job else "images")
            except SourceError as exc:
                raise ConfigError(f"--calib: {exc}") from None
            calibration = Calibration(seeded_sample(items, args.calib_images),
                                      job.preprocess if job else Preprocess(), args.method)
        return quantize(args.model, args.output, args.precision, calibration)

    metadata = on_root(comm, make)
    if comm.rank == 0:
        print(f"wrote {args.output} ({', '.join(f'{k}={v}' for k, v in metadata.items())})", flush=True)
    return 0
