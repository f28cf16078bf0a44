"""Command line: `python -m batchscore [score] ...`: the parser, MPI start-up and exit status; each subcommand is a
module in commands/, whose `run` docstring is its help.

Exit status: 0 on success (also when some images were bad: they are error rows), 2 for a usage
or configuration error found before any work, 1 for an unexpected failure (all ranks abort), 75
(signals.EXIT_REQUEUE, EX_TEMPFAIL) when SIGINT/SIGTERM/SIGUSR1 stopped the run with work left: every rank
committed its finished batches, and rerunning the same command continues (Slurm: requeue the job).
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .commands import accuracy, bench, build, doctor, export, quantize, report, score
from .config import ConfigError
from .gpu import cuda_defaults

#: subcommand → its module (commands/): `add_arguments(parser)` and `run(args, comm)`, whose docstring is the help
COMMANDS = {"score": score, "doctor": doctor, "export": export, "build": build, "quantize": quantize,
            "accuracy": accuracy, "bench": bench, "report": report}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchscore",
        description="Score large image archives with an ONNX model, one MPI rank per GPU or core share. "
                    "Run under `mpiexec -n N python -m batchscore ...`. With no command (from the "
                    "repository root) it scores the bundled sample, jobs/demo.toml, replacing the sample's own "
                    "result in results/demo; options given without a command are `score` options for it.",
        epilog="Exit status: 0 ok (bad images are error rows), 2 usage or job error, 1 failure, "
               "75 stopped by SIGINT/SIGTERM/SIGUSR1 with work left (rerun the same command to continue).",
    )
    parser.add_argument("--version", action="version", version=f"batchscore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.run.__doc__.splitlines()[0], description=command.run.__doc__)
        command.add_arguments(p)
        p.set_defaults(func=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; MPI starts only after the arguments parsed, so `--help` needs no MPI."""
    argv = sys.argv[1:] if argv is None else argv
    sample = not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"))
    args = build_parser().parse_args(["score", *argv] if sample else argv)
    # no command: score options on jobs/demo.toml (the bundled sample), whose own output it replaces
    args.sample = sample and args.job is None
    cuda_defaults()  # before any library may start CUDA in this process
    from mpi4py import MPI

    from .comm import abort_on_exception
    from .signals import EXIT_REQUEUE, Interrupted

    comm = MPI.COMM_WORLD
    try:
        return args.func(args, comm)
    except ConfigError as exc:
        if comm.rank == 0:
            print(f"batchscore: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted:  # raised on every rank together, after all committed their work and rank 0 said so
        return EXIT_REQUEUE
    except KeyboardInterrupt:  # Ctrl-C outside a scoring loop (planning, build, quantize...): nothing to continue
        print("batchscore: interrupted by SIGINT; rerun the same command to continue", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # any rank's failure stops all ranks instead of leaving them blocked
        abort_on_exception(comm, exc)
        return 1
