"""`batchscore bench`: the command-line face of bench.py's engine-only sweep."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import BACKENDS, PRECISIONS, ConfigError, load_job
from .jobargs import default_job

if TYPE_CHECKING:
    from mpi4py import MPI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", type=Path, default=None, metavar="FILE",
                   help="job for the model, backend, threads, cache and int8 calibration (default: jobs/demo.toml)")
    p.add_argument("--model", type=Path, metavar="ONNX", help="ONNX model (default: the job's)")
    p.add_argument("--backend", choices=BACKENDS, help="default: the job's")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["fp32"], metavar="P",
                   help="precisions to sweep, of fp32 fp16 int8 (default: fp32)")
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--max-batch", type=int, default=256, metavar="N",
                       help="sweep batch sizes 1, 2, 4, … up to N or the first out-of-memory (default: 256)")
    sizes.add_argument("--batch-sizes", type=int, nargs="+", metavar="N", help="exactly these batch sizes")
    p.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed calls per point (default: 5)")
    p.add_argument("--repeats", type=int, default=20, metavar="N", help="timed calls per point, median (default: 20)")
    p.add_argument("--threads", type=int, metavar="N", help="inference threads per rank (0: from the cores)")
    p.add_argument("--baseline", type=Path, metavar="JSON",
                   help="one-rank bench JSON for the scaling efficiency (default: measure rank 0 alone)")
    p.add_argument("--json", type=Path, default=Path("bench.json"), metavar="FILE",
                   help="results file (default: bench.json)")


def run(args: argparse.Namespace, comm: MPI.Comm) -> int:
    """Engine-only throughput, trtexec-style: batch sizes × precisions, images/s and latency, JSON.

    Under `mpiexec -n N` every rank measures at once: per-rank, aggregate and scaling efficiency.
    """
    from ..bench import batch_sizes, format_bench, read_baseline, run_bench
    from ..enginecache import default_cache_dir
    from ..writer import write_json

    sizes = tuple(args.batch_sizes) if args.batch_sizes else tuple(batch_sizes(args.max_batch))
    if min(sizes) < 1 or args.warmup < 0 or args.repeats < 1:
        raise ConfigError("batch sizes and --repeats must be >= 1, --warmup >= 0")
    job = load_job(args.job or default_job()).with_overrides(
        model=args.model.resolve() if args.model else None, backend=args.backend, threads=args.threads,
        # a model given without a job: its FP16/INT8 variants go to the engine cache, not into the output
        # folder of the bundled demo job (inside the installed checkout)
        cache_dir=default_cache_dir() if args.model and not args.job else None)
    try:
        baseline = read_baseline(args.baseline) if args.baseline else {}
    except ConfigError as exc:
        raise ConfigError(f"--baseline {exc}") from None
    doc = run_bench(job, args.precision, sizes, args.warmup, args.repeats, comm, baseline)
    if doc is not None:
        write_json(args.json, doc)
        print(format_bench(doc), flush=True)
        print(f"\nwrote {args.json}", flush=True)
    return 0
