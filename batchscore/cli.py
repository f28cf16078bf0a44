"""Command line: `python -m batchscore [score] ...`; each subcommand's help is its docstring.

Exit status: 0 on success (also when some images were bad: they are error rows), 2 for a usage
or configuration error found before any work, 1 for an unexpected failure (all ranks abort).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import ConfigError, Job, load_job

DEMO_JOB = Path("jobs/demo.toml")


def default_job() -> Path:
    """jobs/demo.toml from the current folder, else from the source checkout the package lives in."""
    if DEMO_JOB.is_file():
        return DEMO_JOB
    return Path(__file__).resolve().parent.parent / DEMO_JOB


def add_job_arguments(p: argparse.ArgumentParser) -> None:
    """The job file and the overrides every job-driven subcommand shares."""
    p.add_argument("--job", type=Path, default=None, metavar="FILE",
                   help="TOML job file (default: jobs/demo.toml, the bundled sample)")
    g = p.add_argument_group("overrides (take precedence over the job file)")
    g.add_argument("--input", type=Path, nargs="+", metavar="PATH",
                   help="folder, .tar, .h5 or list file(s) of images")
    g.add_argument("--model", type=Path, metavar="ONNX", help="ONNX model file")
    g.add_argument("--output", type=Path, metavar="DIR", help="results folder (scores.h5, summary.json)")
    g.add_argument("--batch-size", type=int, metavar="N")
    g.add_argument("--backend", choices=["auto", "onnxruntime", "torch", "tensorrt"])
    g.add_argument("--precision", choices=["fp32", "fp16", "int8"])
    g.add_argument("--top-k", type=int, metavar="K")
    g.add_argument("--save-outputs", nargs="*", metavar="NAME",
                   help="keep full model outputs in scores.h5 (no names: all outputs)")
    g.add_argument("--workers", type=int, metavar="N", help="decode processes per rank (0: from the cores)")
    g.add_argument("--threads", type=int, metavar="N", help="inference threads per rank (0: from the cores)")
    g.add_argument("--overwrite", action="store_true", default=None, help="replace an existing result")


def job_from_args(args: argparse.Namespace) -> Job:
    """Load the job file and apply command-line overrides (paths relative to the current folder)."""
    job = load_job(args.job or default_job())
    save = None
    if args.save_outputs is not None:
        save = tuple(args.save_outputs) or ("*",)
    return job.with_overrides(
        input=tuple(p.resolve() for p in args.input) if args.input else None,
        model=args.model.resolve() if args.model else None,
        output=args.output.resolve() if args.output else None,
        batch_size=args.batch_size, backend=args.backend, precision=args.precision, top_k=args.top_k,
        save_outputs=save, workers=args.workers, threads=args.threads, overwrite=args.overwrite,
    )


def cmd_score(args: argparse.Namespace, comm) -> int:  # noqa: ANN001 - MPI.Comm
    """Score images with a model on every MPI rank; rank 0 writes scores.h5 and summary.json."""
    from .runner import run

    run(job_from_args(args), comm)
    return 0


COMMANDS = {"score": (cmd_score, add_job_arguments)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchscore",
        description="Score large image archives with an ONNX model, one MPI rank per GPU or core share. "
                    "Run under `mpiexec -n N python -m batchscore ...`; with no command it scores the "
                    "bundled sample with jobs/demo.toml.",
        epilog="Exit status: 0 ok (bad images are error rows), 2 usage or job error, 1 failure.",
    )
    parser.add_argument("--version", action="version", version=f"batchscore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (func, add_arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0], description=func.__doc__)
        add_arguments(p)
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; MPI starts only after the arguments parsed, so `--help` needs no MPI."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv or ["score"])
    from mpi4py import MPI

    from .comm import abort_on_exception

    comm = MPI.COMM_WORLD
    try:
        return args.func(args, comm)
    except ConfigError as exc:
        if comm.rank == 0:
            print(f"batchscore: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # any rank's failure stops all ranks instead of leaving them blocked
        abort_on_exception(comm, exc)
        return 1
