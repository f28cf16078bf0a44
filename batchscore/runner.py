"""The scoring run: rank 0 plans and checks (plan.py), every rank scores its shard, rank 0 merges and reports."""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, closing, contextmanager
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np
from mpi4py import MPI

from . import __version__
from .comm import Progress, cores_for_rank, log, placement
from .config import ConfigError, Job
from .engines import GPU_BACKENDS, Engine, EngineOptions, Outputs, create_engine
from .gpu import GpuBinding, bind_gpu
from .decode.cpu import CpuDecoder, decode_executor
from .decode.gpu import GpuDecoder, default_workers, open_gpu_decoder
from .decode.procs import decode_processes
from .incremental import publish_run
from .itemtable import ItemTable, decode_key
from .pipeline import Batch, batches, default_prefetch
from .plan import Plan, hold_output, plan_run
from .report import RankStats, format_table, summarize
from .signals import GracefulStop, Interrupted
from .writer import PARTS, PartWriter, merge, retire_parts, write_json

T = TypeVar("T")


class Timeline:
    """When each step of this rank's run was reached, in seconds from its start (summary.json)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def mark(self, step: str) -> None:
        self.seconds[step] = round(time.perf_counter() - self.start, 3)


#: top-k up to this k takes k argmax passes; a larger k, one partition, which is as fast from about twice this k
#: (benchmarks/topk.py measures both; docs/dev/decisions/0011)
ARGMAX_TOP_K = 16


def topk(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and softmax probabilities of the k best classes, best first; equal probabilities in class order,
    as a stable sort of every class gives them.

    Why not that sort: it runs on every batch in the rank's loop, beside the decode threads and the GPU decoder
    thread that need the same interpreter lock; for 1000 classes it was most of the loop's own time
    (benchmarks/topk.py). Non-negative floats order as their bits do, and argmax returns the first of equal
    values, so k argmax passes over the probabilities' bits give the stable sort's order, ties and NaN rows
    included; a larger k partitions one distinct key per class (its bits, descending, then its index)."""
    prob = np.subtract(logits, logits.max(axis=1, keepdims=True), dtype=np.float32)
    np.exp(prob, out=prob)
    prob /= prob.sum(axis=1, keepdims=True)
    classes = prob.shape[1]
    k = min(k, classes)
    if k <= ARGMAX_TOP_K:
        bits = prob.view(np.int32).copy()
        rows = np.arange(len(bits))
        idx = np.empty((len(bits), k), np.int64)
        for j in range(k):
            idx[:, j] = best = bits.argmax(axis=1)
            bits[rows, best] = np.iinfo(np.int32).min  # below every probability's bits, NaN's included
    else:
        key = (0x7FFFFFFF - prob.view(np.int32).astype(np.int64)) << classes.bit_length() | np.arange(classes)
        best = np.argpartition(key, k - 1, axis=1)[:, :k]
        idx = np.take_along_axis(best, np.argsort(np.take_along_axis(key, best, axis=1), axis=1), axis=1)
    return idx.astype(np.int32), np.take_along_axis(prob, idx, axis=1)


def batch_topk(outputs: Outputs, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch's top-k: the one its engine computed on its device (`outputs.topk`), else `topk` of its first
    output here."""
    if outputs.topk is not None:
        return outputs.topk.index, outputs.topk.score
    return topk(next(iter(outputs.values())), k)


def _expand(batch: Batch, values: np.ndarray, fill: float) -> np.ndarray:
    """Per-key rows from rows of the good images only; error rows get `fill`."""
    full = np.full((len(batch.keys), *values.shape[1:]), fill, dtype=values.dtype)
    full[batch.ok] = values
    return full


def scored(engine: Engine, decoded: Iterable[Batch],
           empty: Callable[[], Outputs]) -> Iterator[tuple[Batch, Outputs]]:
    """(batch, outputs) in order, through `infer_iter` so a GPU engine copies batch i+1 in while batch i
    computes; a batch in which no image decoded skips the engine and gets `empty()` outputs.

    Each run of batches with a good image goes through one `infer_iter`; a batch without one ends the run and
    is handed on at once, so a stretch of unreadable images is committed as it goes, not held to the end."""
    stream = iter(decoded)
    batch = next(stream, None)
    while batch is not None:
        if not batch.ok.any():
            yield batch, empty()
            batch = next(stream, None)
            continue
        pending: deque[Batch] = deque()
        after: list[Batch | None] = [None]  # the batch that ended the run (None: the end of the stream)

        def good_run(first: Batch) -> Iterator[np.ndarray]:
            current: Batch | None = first
            while current is not None and current.ok.any():
                pending.append(current)
                yield current.tensors
                current = next(stream, None)
            after[0] = current

        for outputs in engine.infer_iter(good_run(batch)):
            yield pending.popleft(), outputs
        batch = after[0]


def bind(job: Job, backend: str, comm: MPI.Comm) -> GpuBinding | None:
    """This rank's GPU for a GPU backend (collective over `comm`, before CUDA starts); None otherwise."""
    return bind_gpu(comm, job.share_gpus) if backend in GPU_BACKENDS else None


def open_engine(job: Job, backend: str, model: Path, threads: int, device: int | None, rank: int) -> Engine:
    """Activate this rank's engine on `device` (from `bind`), logging how long each step took.

    GPU engines come built or loaded from the engine cache; activation is where a cold start waits.
    """
    options = EngineOptions(job.batch_size, threads, device=device, precision=job.precision,
                            compile=job.compile, cache_dir=job.cache_dir, top_k=job.top_k)
    start = time.perf_counter()
    engine = create_engine(backend, model, options).activate()
    steps = ", ".join(f"{name} {s:.2f} s" for name, s in getattr(engine, "start_phases", {}).items())
    cache = f"; engine cache {engine.cache_status}" if engine.cache_status != "none" else ""
    log(rank, f"{backend} engine on {engine.device_name} ready in {time.perf_counter() - start:.2f} s"
              f"{f' ({steps})' if steps else ''}{cache}{f'; {engine.note}' if engine.note else ''}")
    return engine


@contextmanager
def _beside(opening: AbstractContextManager[T]) -> Iterator[Callable[[], T]]:
    """Enter `opening` on a thread of its own while the caller goes on; the call yielded waits for its value.

    Why: a rank's GPU decoder opens, probes and warms up (seconds) while its engine activates (longer), instead
    of after it (docs/dev/decisions/0008). It is left, on the way out, once that thread is done."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="open-decoder")
    entered = pool.submit(opening.__enter__)
    pool.shutdown(wait=False)
    failure: tuple = (None, None, None)
    try:
        yield entered.result
    except BaseException as exc:
        failure = (type(exc), exc, exc.__traceback__)
        raise
    finally:
        if entered.exception() is None:  # waits for the thread; an enter that raised has nothing to leave
            opening.__exit__(*failure)


def score_shard(job: Job, plan: Plan, items: ItemTable, comm: MPI.Comm, stop: GracefulStop,
                timeline: Timeline) -> RankStats:
    """This rank's loop over its share `items`, until done or `stop`: decode ahead → infer → top-k → commit
    parts; returns its stats."""
    where = placement(comm)
    cores = cores_for_rank(where.local_size)
    threads = job.threads or cores
    stats = RankStats(comm.rank, local_rank=where.local_rank, threads=threads)
    binding = bind(job, plan.backend, comm)
    device, stats.gpu_shared = (binding.index, binding.shared) if binding else (None, False)
    with _beside(open_gpu_decoder(plan.decode, job, device, comm.rank, cores, warm=items[:job.batch_size])) as opened:
        engine = open_engine(job, plan.backend, plan.model, threads, device, comm.rank)  # the decoder opens meanwhile
        timeline.mark("engine_ready")
        gpu = opened()  # None: CPU decode
        stats.device = engine.device_name  # e.g. "cuda:1 <GPU name>": the bound GPU's index and name
        writer = PartWriter(job.output, plan.run_id, comm.rank)
        stop.on_signal = lambda name: stopping(job, plan, comm.rank, f"{name} on rank {comm.rank}", writer, stop)
        progress = Progress(comm, total=plan.total, initial=plan.resumed)
        workers = job.workers or default_workers(cores, gpu is not None)
        kind = job.worker_kind if gpu is None else "thread"  # a GPU decoder's workers only read
        with (decode_processes(kind, workers, cores, job.preprocess.shape, lambda text: log(comm.rank, text)) as procs,
              decode_executor(workers) as pool,  # the threads end first: none is left waiting on a closed process
              closing(GpuDecoder(gpu, job.preprocess, pool, job.decode_draft) if gpu else
                      CpuDecoder(job.preprocess, pool, job.decode_draft, procs)) as decoder):
            stats.workers, stats.gpu_threads = workers, 1 if gpu else 0
            stats.worker_kind = "process" if procs else "thread"
            ahead = default_prefetch(workers, job.batch_size, gpu is not None)
            comm.Barrier()
            start = time.perf_counter()
            decoded = stop.until_stopped(batches(items, decoder, job.batch_size, ahead))
            for n, (batch, outputs) in enumerate(scored(engine, decoded, plan.empty_outputs)):
                idx, score = batch_topk(outputs, job.top_k)
                writer.add(batch.keys, _expand(batch, idx, -1), _expand(batch, score, np.nan), batch.errors,
                           {name: _expand(batch, outputs[name], np.nan) for name in plan.save_outputs})
                if (n + 1) % job.commit_every == 0:
                    writer.commit()
                stats.add(batch)
                if n == 0:
                    stats.first_batch_seconds, stats.first_batch_images = time.perf_counter() - start, stats.images
                    timeline.mark("first_batch")
                progress.update(stats.images)
    stop.quiet()  # from here a signal is only a flag: settle() and the caller act on it
    writer.commit()
    timeline.mark("scored")
    stop.settle(incomplete=stats.images < len(items))  # collective: every rank learns if any stopped early
    stats.seconds = time.perf_counter() - start
    stats.ok = stats.images - stats.failed
    stats.stages.update(engine.stage_seconds(), write=writer.seconds)
    engine.deactivate()
    progress.close(stats.images)
    return stats


def finish(job: Job, plan: Plan, stats: list[RankStats], timeline: Timeline) -> dict:
    """Rank 0: merge the parts into scores.h5, write summary.json, print the table."""
    info = {
        "version": __version__, "backend": plan.backend, "backend_reason": plan.backend_reason,
        "precision": job.precision, "batch_size": job.batch_size, "compile": job.compile, "top_k": job.top_k,
        "model": str(job.model), "model_sha256": plan.model_sha256, "run_id": plan.run_id,
        "job_file": str(job.source or ""), "output": str(job.output / "scores.h5"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scored_model": str(plan.model), "precision_check": plan.precision_check,
        "decode": plan.decode, "decode_reason": plan.decode_reason,
    }
    attrs = {**{k: v for k, v in info.items() if k not in ("output", "precision_check")}, "ranks": len(stats),
             "preprocess": json.dumps(asdict(job.preprocess)),
             "topk_score": f"softmax probabilities of output '{next(iter(plan.output_shapes))}'",
             "status_codes": "0 = ok, 1 = error (see 'error')"}
    if plan.classes:
        attrs["classes"] = plan.classes
    if plan.precision_check:
        attrs["precision_check"] = json.dumps(plan.precision_check)
    timeline.mark("merge_start")
    merged = merge(job.output, plan.keys, attrs)
    timeline.mark("merged")
    with h5py.File(job.output / "scores.h5", "r") as f:
        failed = int((f["status"][:] != 0).sum()) if "status" in f else 0  # no rows: an incremental no-op
    summary = summarize(stats, wall_seconds=time.perf_counter() - timeline.start, total_keys=plan.total,
                        failed_total=failed, resumed=plan.resumed, info=info)
    summary["skipped"] = plan.skipped or {}
    if plan.incremental:  # scores.h5 is published: now fold this run into OUTPUT/index.h5
        summary["incremental"] = publish_run(plan.incremental, [decode_key(k) for k in plan.keys])
    summary["merge"] = {"ignored_rows": merged["ignored_rows"], "duplicate_rows": merged["duplicate_rows"]}
    summary["timeline_seconds"] = timeline.seconds  # rank 0's, from the start of the run
    write_json(job.output / "summary.json", summary)
    retire_parts(job.output)  # scores.h5 now holds every row; the parts were only for resume
    print(format_table(summary), flush=True)
    return summary


def stop_line(job: Job, reason: str) -> str:
    """The one line a stopped job prints (rank 0): why, where the committed work is, how to continue."""
    return (f"batchscore: interrupted: stopped by {reason}; finished batches are committed in {job.output / PARTS}; "
            "rerun the same command to continue")


def record_stop(job: Job, plan: Plan, reason: str, scored: int | None = None) -> None:
    """OUTPUT/.parts/interrupted.json: why and when the run stopped (`scored`: None while ranks may still commit)."""
    write_json(job.output / PARTS / "interrupted.json", {
        "reason": reason, "run_id": plan.run_id, "total": plan.total, "scored_this_run": scored,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def stopping(job: Job, plan: Plan, rank: int, reason: str, writer: PartWriter, stop: GracefulStop) -> None:
    """At once on a stop signal, from its watcher thread: commit this rank's finished batches; rank 0 also
    records the stop and prints the job's line, before a launcher that forwarded the signal kills the ranks."""
    writer.commit()
    if rank == 0:
        record_stop(job, plan, reason)
        print(stop_line(job, reason), file=sys.stderr, flush=True)
        stop.announced = True


def run(job: Job, comm: MPI.Comm) -> dict | None:
    """Score a job on every rank of `comm`; returns the summary on rank 0 (None elsewhere)."""
    with ExitStack() as held:  # rank 0 holds the output folder's lock until the merge is done
        timeline = Timeline()
        plan, error = None, None
        if comm.rank == 0:
            try:
                held.callback(hold_output(job))
                plan = plan_run(job)
            except ConfigError as exc:
                error = str(exc)
        light, error = comm.bcast((replace(plan, todo=None, keys=None) if plan else None, error), root=0)
        if error:
            raise ConfigError(error)
        share = comm.scatter(plan.todo.split(comm.size) if comm.rank == 0 else None, root=0)
        if comm.rank == 0:
            plan.todo = None  # every rank holds its share now
        timeline.mark("planned")
        return _run(job, plan or light, share, comm, timeline)


def _run(job: Job, plan: Plan, share: ItemTable, comm: MPI.Comm, timeline: Timeline) -> dict | None:
    """Every rank: score its shard; then rank 0 merges, or records the stop."""
    job = job.with_overrides(precision=plan.precision, batch_size=plan.batch_size, compile=plan.compile,
                             output=plan.incremental.run_dir if plan.incremental else None)
    if comm.rank == 0:
        log(0, f"{plan.total} images ({plan.resumed} already done), {comm.size} rank(s), "
               f"backend {plan.backend}: {plan.backend_reason}; decode {plan.decode}: {plan.decode_reason}")
    with GracefulStop(comm) as stop:  # a signal during the merge is ignored: the merge is short and atomic
        stats = score_shard(job, plan, share, comm, stop, timeline)
        gathered = comm.gather(stats, root=0)
        if stop.interrupted:
            if comm.rank == 0:
                record_stop(job, plan, stop.reason, sum(s.images for s in gathered))
                if not stop.announced:
                    print(stop_line(job, stop.reason), file=sys.stderr, flush=True)
            comm.Barrier()  # no rank exits (a launcher may then kill the others) before rank 0 has said so
            raise Interrupted(stop.reason)
        if stop.announced:  # the signal came while the last batches were scored: nothing was left to do
            print("batchscore: the stop came after the last batch was scored: publishing the complete result",
                  file=sys.stderr, flush=True)
        return finish(job, plan, gathered, timeline) if comm.rank == 0 else None
