"""End-to-end scoring of the sample archive: batchscore's pipeline against a naive loop, same cores, one run.

naive:    one process, for each batch: Pillow decode + preprocess every image in turn, then ONNX Runtime
          (intra-op threads = all cores), top-k; one HDF5 file written at the end.
pipeline: batchscore's own scoring run (runner.run, one rank, default sizing: cores + 1 decode workers
          ahead of the engine, threads below 4 cores, ONNX Runtime threads = cores), part files, merge,
          summary.json; pipeline-processes: the same with worker_kind = "process".
Both use every core of this machine and take turns round by round, so load from other processes hits
them alike. Reported: the median round of each and the best (on a shared machine the best round is
the one least disturbed by other load); wall time from listing the archive to the written result.
Both must give the same top-1 class for every image, or the run fails.

    python benchmarks/cpu_pipeline.py                       # jobs/demo.toml, 5 rounds, JSON in results/
    python benchmarks/cpu_pipeline.py --rounds 3 --batch-size 64 --json results/cpu_pipeline_b64.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import onnxruntime as ort
from mpi4py import MPI

from batchscore.config import Job, load_job
from batchscore.preprocess import preprocess
from batchscore.runner import run, topk
from batchscore.sources import Reader, list_items
from batchscore.writer import write_json

ROOT = Path(__file__).resolve().parents[1]


def naive(job: Job, out: Path, threads: int) -> np.ndarray:
    """The loop a first version would be: decode a batch, infer it, repeat; returns top-1 per image."""
    items = list_items(job.input, job.hdf5_dataset)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(job.model), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    reader = Reader()
    indices, scores = [], []
    for start in range(0, len(items), job.batch_size):
        tensors, ok = [], []
        for item in items[start:start + job.batch_size]:
            try:
                tensors.append(preprocess(reader.read(item), job.preprocess))
                ok.append(True)
            except (OSError, ValueError):  # unreadable, or preprocess's DecodeError
                ok.append(False)
        idx = np.full((len(ok), job.top_k), -1, np.int32)
        score = np.full((len(ok), job.top_k), np.nan, np.float32)
        if tensors:
            ok = np.array(ok)
            idx[ok], score[ok] = topk(session.run(None, {name: np.stack(tensors)})[0], job.top_k)
        indices.append(idx)
        scores.append(score)
    with h5py.File(out, "w") as f:
        f["key"] = [it.key for it in items]
        f["topk_index"] = np.concatenate(indices)
        f["topk_score"] = np.concatenate(scores)
    return top1_of(out)


def top1_of(path: Path) -> np.ndarray:
    """Top-1 class index per image from a scores file."""
    with h5py.File(path, "r") as f:
        return f["topk_index"][:, 0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--job", type=Path, default=ROOT / "jobs" / "demo.toml")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=None, help="default: the job's")
    p.add_argument("--json", type=Path, default=ROOT / "results" / "cpu_pipeline.json")
    args = p.parse_args(argv)

    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        # workers/threads 0: the run sizes them itself from this machine's cores, as a user's run would
        job = load_job(args.job).with_overrides(output=Path(tmp) / "pipeline", overwrite=True, workers=0,
                                                threads=0, batch_size=args.batch_size)
        pipelines = {"pipeline": job, "pipeline-processes": job.with_overrides(worker_kind="process")}
        times: dict[str, list[float]] = {"naive": [], **{k: [] for k in pipelines}}
        summaries = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            naive_top1 = naive(job, Path(tmp) / "naive.h5", cores)
            times["naive"].append(time.perf_counter() - start)
            for name, pipeline_job in pipelines.items():
                start = time.perf_counter()
                summary = run(pipeline_job, MPI.COMM_SELF)
                times[name].append(time.perf_counter() - start)
                if name == "pipeline":
                    summaries.append(summary)
                if not np.array_equal(top1_of(job.output / "scores.h5"), naive_top1):
                    raise SystemExit(f"{name} and the naive loop disagree on some image's top-1 class")
    images = summaries[0]["images"]["total"]
    median = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    rate = {k: images / v for k, v in median.items()}
    ratio = rate["pipeline"] / rate["naive"]
    best_ratio = best["naive"] / best["pipeline"]
    processes_ratio = rate["pipeline-processes"] / rate["naive"]
    mid = sorted(summaries, key=lambda s: s["wall_seconds"])[len(summaries) // 2]
    result = {
        "benchmark": "cpu_pipeline", "host": platform.node(), "cores": cores, "images": images,
        "batch_size": job.batch_size, "rounds": args.rounds, "model": str(job.model),
        "seconds": times, "median_seconds": median, "best_seconds": best, "images_per_s": rate,
        "speedup": ratio, "speedup_best_rounds": best_ratio, "speedup_processes": processes_ratio,
        "target_speedup": 1.5, "pipeline_stages": mid["per_rank"][0]["stages"],
        "pipeline_bound": mid["per_rank"][0]["bound"],
    }
    print(f"\ncpu_pipeline: {images} images of {args.job.name}, batch {job.batch_size}, {cores} cores, "
          f"median of {args.rounds} alternating rounds")
    print(f"{'':<18} {'median s':>8} {'img/s':>8} {'best s':>8} {'img/s':>8}   all rounds (s)")
    for k in times:
        print(f"{k:<18} {median[k]:>8.2f} {rate[k]:>8.1f} {best[k]:>8.2f} {images / best[k]:>8.1f}   "
              + " ".join(f"{t:.2f}" for t in times[k]))
    print(f"speed-up: {ratio:.2f}x median, {best_ratio:.2f}x best rounds (target >= 1.5x); with decode processes "
          f"(worker_kind = \"process\") {processes_ratio:.2f}x median")
    stages = ", ".join(f"{k} {v:.2f}" for k, v in result["pipeline_stages"].items())
    print(f"pipeline stages (s, median round): {stages}; bound: {result['pipeline_bound']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
