"""Command line: `python -m batchscore [score] ...`; each subcommand's help is its docstring.

Exit status: 0 on success (also when some images were bad: they are error rows), 2 for a usage
or configuration error found before any work, 1 for an unexpected failure (all ranks abort), 75
(signals.EXIT_REQUEUE, EX_TEMPFAIL) when SIGINT/SIGTERM/SIGUSR1 stopped the run with work left: every rank
committed its finished batches, and rerunning the same command continues (Slurm: requeue the job).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import (BACKENDS, CALIB_METHODS, COMPILE_MODES, DECODE_MODES, GPU_DECODERS, PRECISIONS, WORKER_KINDS,
                     ConfigError, Job, load_job)
from .gpu import cuda_defaults

DEMO_JOB = Path("jobs/demo.toml")


def default_job() -> Path:
    """jobs/demo.toml from the current folder, else from the source checkout the package lives in (bench reads
    only its settings from it)."""
    if DEMO_JOB.is_file():
        return DEMO_JOB
    return Path(__file__).resolve().parent.parent / DEMO_JOB


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
        gpu_decode_threads=getattr(args, "gpu_decode_threads", None),
    )


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    g = add_job_arguments(p)
    g.add_argument("--decode", choices=DECODE_MODES,
                   help="where images are decoded: gpu = nvJPEG on the rank's GPU (torch backend), hybrid = "
                        "GPU and CPU workers share each batch, auto = gpu when it works here, else cpu")
    g.add_argument("--gpu-decoder", choices=GPU_DECODERS,
                   help="GPU decode library: nvimgcodec (hardware JPEG decoder, then CUDA), torchvision (nvJPEG), "
                        "auto = nvimgcodec when installed and working, else torchvision")
    g.add_argument("--gpu-decode-threads", type=int, metavar="N",
                   help="GPU decoder threads per rank, each with its own CUDA stream; batches take turns")
    p.add_argument("--incremental", action="store_true", default=None,
                   help="score only images new or changed since the last --incremental run into OUTPUT: "
                        "results in OUTPUT/runs/<UTC time>/, cumulative manifest in OUTPUT/index.h5")


def cmd_score(args: argparse.Namespace, comm) -> int:  # noqa: ANN001 - MPI.Comm
    """Score images with a model on every MPI rank; rank 0 writes scores.h5 and summary.json."""
    from .runner import run

    job = job_from_args(args).with_overrides(incremental=args.incremental)
    if getattr(args, "sample", False) and args.output is None:
        job = job.with_overrides(overwrite=True)  # the bundled sample's own result: rerunning it replaces it
    run(job, comm)
    return 0


def add_doctor_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", type=Path, default=None, metavar="FILE",
                   help="also check this job: inputs, model, output folder, engine cache")


def cmd_doctor(args: argparse.Namespace, comm) -> int:  # noqa: ANN001 - MPI.Comm
    """Check MPI, launcher, GPU binding, backends, decoders (and a job); prints the fix for each problem.

    Run it the way the job will run (same launcher, same number of ranks). Exit 0 when nothing FAILs.
    """
    from .doctor import doctor

    return doctor(comm, args.job)


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["parquet"], default="parquet", help="table format (default: parquet)")
    p.add_argument("results", type=Path, metavar="RESULTS_DIR", help="a finished run's output folder (scores.h5)")
    p.add_argument("--output", type=Path, default=None, metavar="FILE",
                   help="file to write (default: RESULTS_DIR/scores.parquet)")


def cmd_export(args: argparse.Namespace, comm) -> int:  # noqa: ANN001 - MPI.Comm
    """Export scores.h5 as a table (one row per image) that joins a data team's tables; needs pyarrow."""
    from .export import export_parquet

    if comm.rank == 0:
        print(export_parquet(args.results, args.output), flush=True)
    return 0


def cmd_build(args: argparse.Namespace, comm) -> int:  # noqa: ANN001 - MPI.Comm
    """Prebuild the GPU engines of a job (TensorRT plans, compiled PyTorch) into the engine cache.

    Launch it like the job itself (same launcher, same ranks per node), for example as a short job
    before the big one: one rank per node builds each engine, the others wait and load it, and the
    scoring run then starts in seconds. Prints each rank's device and whether it built or loaded.
    """
    from .engines.build import build

    rows = build(job_from_args(args), comm)
    for r in rows:
        print(f"rank {r['rank']} {r['host']} {r['device']}: {r['backend']} engine {r['cache']} "
              f"in {r['seconds']:.1f} s ({r['model']})", flush=True)
    return 0


def add_quantize_arguments(p: argparse.ArgumentParser) -> None:
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


def cmd_quantize(args: argparse.Namespace, comm) -> int:  # noqa: ANN001 - MPI.Comm
    """Write an FP16 or INT8 (symmetric Q/DQ, calibrated on images) variant of an FP32 ONNX model.

    INT8 calibration images go through the job's preprocessing; the measured ranges are saved next to
    OUTPUT and reused when the same model, images and method are quantised again.
    """
    from .accuracy import on_root
    from .precision import Calibration, quantize, seeded_sample
    from .preprocess import Preprocess
    from .sources import SourceError, list_items

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


def add_accuracy_arguments(p: argparse.ArgumentParser) -> None:
    add_job_arguments(p)
    p.add_argument("--precisions", default="fp32,fp16,int8", metavar="LIST",
                   help="comma-separated precisions to compare with fp32 (default: fp32,fp16,int8)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="where to write the table as JSON (default: OUTPUT/accuracy.json)")


def cmd_accuracy(args: argparse.Namespace, comm) -> int:  # noqa: ANN001 - MPI.Comm
    """Top-1/top-5 of each precision against FP32 on a labelled archive (images calibration never saw).

    Prints the table (with top-1 agreement and the largest probability difference) and saves it as JSON;
    runs on every MPI rank like scoring, rank 0 gathers.
    """
    from .accuracy import run_accuracy
    from .config import PRECISIONS

    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ConfigError(f"--precisions: unknown {unknown}; choose from {', '.join(PRECISIONS)}")
    run_accuracy(job_from_args(args), precisions, args.json, comm)
    return 0


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
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


def cmd_bench(args: argparse.Namespace, comm) -> int:  # noqa: ANN001 - MPI.Comm
    """Engine-only throughput, trtexec-style: batch sizes × precisions, images/s and latency, JSON.

    Under `mpiexec -n N` every rank measures at once: per-rank, aggregate and scaling efficiency.
    """
    from .bench import run_bench

    return run_bench(args, comm)


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", type=Path, nargs="+", metavar="JSON", help="summary.json and/or bench JSON files")
    p.add_argument("--out", type=Path, default=Path("plots"), metavar="DIR", help="folder for the PNGs (default: plots)")


def cmd_report(args: argparse.Namespace, comm) -> int:  # noqa: ANN001 - MPI.Comm
    """PNG plots from summary/bench JSON: images/s vs batch size per precision, and vs rank count.

    Needs matplotlib (pip install 'batchscore[plots]').
    """
    from .plots import report

    if comm.rank == 0:
        print(report(args.files, args.out), flush=True)
    return 0


COMMANDS = {"score": (cmd_score, add_score_arguments), "doctor": (cmd_doctor, add_doctor_arguments),
            "export": (cmd_export, add_export_arguments), "build": (cmd_build, add_job_arguments),
            "quantize": (cmd_quantize, add_quantize_arguments), "accuracy": (cmd_accuracy, add_accuracy_arguments),
            "bench": (cmd_bench, add_bench_arguments), "report": (cmd_report, add_report_arguments)}


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
    for name, (func, add_arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0], description=func.__doc__)
        add_arguments(p)
        p.set_defaults(func=func)
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
