"""The job file and the command-line overrides that the job-driven commands (score, build, accuracy) share."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import BACKENDS, COMPILE_MODES, PRECISIONS, WORKER_KINDS, ConfigError, Job, load_job

DEMO_JOB = Path("jobs/demo.toml")


def default_job() -> Path:
    """jobs/demo.toml from the current folder, else from the source checkout the package lives in (bench reads
    only its settings from it)."""
    if DEMO_JOB.is_file():
        return DEMO_JOB
    return Path(__file__).resolve().parents[2] / DEMO_JOB


def demo_job_here() -> Path:
    """jobs/demo.toml of the current folder (the repository root): the job that scores, builds or checks accuracy
    when no --job is given; elsewhere a ConfigError, never the checkout's sample scored from afar."""
    if not DEMO_JOB.is_file():
        raise ConfigError(f"no --job given and no {DEMO_JOB} in {Path.cwd()}: pass --job FILE, or run from the "
                          "batchscore folder to score the bundled sample")
    return DEMO_JOB


def add_job_arguments(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The job file and the overrides every job-driven subcommand shares; returns the overrides group."""
    p.add_argument("--job", type=Path, default=None, metavar="FILE",
                   help="TOML job file (default: jobs/demo.toml, the bundled sample)")
    g = p.add_argument_group("overrides (take precedence over the job file)")
    g.add_argument("--input", type=Path, nargs="+", metavar="PATH",
                   help="folder, .tar, .h5 or list file(s) of images")
    g.add_argument("--model", type=Path, metavar="ONNX", help="ONNX model file")
    g.add_argument("--output", type=Path, metavar="DIR", help="results folder (scores.h5, summary.json)")
    g.add_argument("--batch-size", type=int, metavar="N",
                   help="images per inference call on each rank (scores do not depend on it); 0, the "
                        "default: 256 on a GPU, 32 on the CPU")
    g.add_argument("--backend", choices=BACKENDS,
                   help="inference engine: onnxruntime (CPU), torch (PyTorch on the rank's GPU), tensorrt "
                        "(unverified: only when named); auto = torch where PyTorch sees a GPU, else onnxruntime")
    g.add_argument("--precision", choices=PRECISIONS,
                   help="fp16/int8: score a variant of the FP32 model, built once and cached (int8 calibrated "
                        "on the input and checked against fp32); a model made by `quantize` is scored at the "
                        "precision it records")
    g.add_argument("--compile", choices=COMPILE_MODES,
                   help="torch backend: eager, CUDA graphs, or an AOTInductor package built once per node, cached; "
                        "auto (default): CUDA graphs on a GPU, eager on the CPU")
    g.add_argument("--cache-dir", type=Path, metavar="DIR", help="engine cache (plans, compiled models)")
    g.add_argument("--top-k", type=int, metavar="K", help="classes kept per image, best first, with probabilities")
    g.add_argument("--save-outputs", nargs="*", metavar="NAME",
                   help="keep full model outputs in scores.h5 (no names: all outputs)")
    g.add_argument("--workers", type=int, metavar="N", help="decode workers per rank (0: from the cores)")
    g.add_argument("--worker-kind", choices=WORKER_KINDS,
                   help="CPU decode workers as processes (faster on many cores) or threads; auto (default): "
                        "processes from 4 cores a rank")
    g.add_argument("--threads", type=int, metavar="N", help="inference threads per rank (0: from the cores)")
    g.add_argument("--overwrite", action="store_true", default=None,
                   help="replace an existing result and discard an unfinished run's committed parts")
    return g


def job_from_args(args: argparse.Namespace) -> Job:
    """Load the job file and apply command-line overrides (paths relative to the current folder)."""
    job = load_job(args.job or demo_job_here())
    save = None
    if args.save_outputs is not None:
        save = tuple(args.save_outputs) or ("*",)
    return job.with_overrides(
        input=tuple(p.resolve() for p in args.input) if args.input else None,
        model=args.model.resolve() if args.model else None,
        output=args.output.resolve() if args.output else None,
        batch_size=args.batch_size, backend=args.backend, precision=args.precision, top_k=args.top_k,
        save_outputs=save, workers=args.workers, worker_kind=args.worker_kind, threads=args.threads,
        overwrite=args.overwrite, compile=args.compile, cache_dir=args.cache_dir.resolve() if args.cache_dir else None,
        # score's own: accuracy decodes every image once on the CPU for all precisions, build decodes none
        decode=getattr(args, "decode", None), gpu_decoder=getattr(args, "gpu_decoder", None),
    )
