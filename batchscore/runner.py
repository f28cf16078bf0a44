"""The scoring run: rank 0 plans and checks, every rank scores its shard, rank 0 merges and reports."""

from __future__ import annotations

import json
import shutil
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np
from mpi4py import MPI

from . import __version__
from .accuracy import gate
from .comm import Progress, cores_for_rank, log, placement
from .config import ConfigError, Job, differences
from .decodeprocs import decode_processes
from .engines import GPU_BACKENDS, Engine, EngineOptions, Outputs, create_engine, resolve
from .gpu import GpuBinding, bind_gpu
from .gpudecode import choose_decode, default_workers, gpu_decoder
from .h5lock import check_locking, is_lock_error, lock_advice
from .incremental import INDEX, Changes, plan_changes, publish_run
from .model import ModelError, class_names, inspect_model, model_sha256
from .pipeline import Batch, batches, decode_executor, default_prefetch
from .precision import job_samples, prepare_model, scored_precision, variant_metadata
from .report import RankStats, format_table, summarize
from .signals import GracefulStop, Interrupted
from .itemtable import ItemTable, decode_key
from .outlock import OutputLock
from .sources import IMAGE_EXTENSIONS, SourceError
from .writer import PARTS, PartWriter, done_keys, key_array, merge, remove_leftovers, retire_parts, write_json

RESULT_FILES = ("scores.h5", "summary.json")
T = TypeVar("T")


@dataclass
class Plan:
    """Decided once by rank 0 and broadcast, so every rank works from the same facts; the items to score are
    not broadcast but split (`todo`, rank 0 only), and only rank 0 keeps every key (`keys`, for the merge)."""

    total: int
    run_id: str
    backend: str
    backend_reason: str
    model_sha256: str
    output_shapes: dict[str, tuple[int, ...]]
    save_outputs: list[str]
    resumed: int
    classes: list[str]
    incremental: Changes | None = None  # --incremental: the run under OUTPUT/runs/ and what it changes
    model: Path | None = None  # the file scored: the job's model, or its fp16/int8 variant
    precision_check: dict | None = None  # the accuracy gate's figures and the variant's metadata
    decode: str = "cpu"  # "cpu", "gpu" or "hybrid": job.decode resolved for this backend (gpudecode.py)
    decode_reason: str = ""
    skipped: dict[str, int] | None = None  # what the listing passed over, by reason (sources.list_items)
    precision: str = "fp32"  # job.precision, or the precision an already reduced model records (scored_precision)
    batch_size: int = 0  # the job's batch size and compile mode settled for the backend's device (Job.settled)
    compile: str = "eager"
    todo: ItemTable | None = None  # rank 0, until split: the items still to score
    keys: np.ndarray | None = None  # rank 0: every key of the run, sorted (writer.key_array)

    def empty_outputs(self) -> Outputs:
        """Zero-row outputs for a batch in which no image decoded."""
        return Outputs({name: np.empty((0, *shape), np.float32) for name, shape in self.output_shapes.items()})


class Timeline:
    """When each step of this rank's run was reached, in seconds from its start (summary.json)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def mark(self, step: str) -> None:
        self.seconds[step] = round(time.perf_counter() - self.start, 3)


def _fingerprint(job: Job, sha: str) -> dict:
    """What must match for a rerun to continue an interrupted run's parts (JSON-normalised, as stored)."""
    return json.loads(json.dumps({"model_sha256": sha, "precision": job.precision, "top_k": job.top_k,
                                  "save_outputs": list(job.save_outputs), "preprocess": asdict(job.preprocess),
                                  "decode_draft": job.decode_draft, "decode": job.decode,
                                  "input": [str(p) for p in job.input]}))


def _writable(out: Path) -> None:
    """Create `out` and write a file there; ConfigError naming the folder when that fails."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} is a file, not a folder: choose a folder for the results "
                          "(--output DIR, or output in the job file)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {out} is not writable ({exc.strerror}); "
                          "choose another --output") from None


def hold_output(job: Job) -> Callable[[], None]:
    """Rank 0, before planning: lock the job's output folder (ConfigError when another job holds it); returns
    the release, which also removes the folder again where this job made it and left nothing in it (a job
    refused while planning writes nothing)."""
    made = not job.output.exists()
    _writable(job.output)
    lock = OutputLock(job.output).acquire()
    remove_leftovers(job.output)  # this job holds the folder: temporary files in it are a killed job's
    if lock.stale:
        log(0, f"took over the lock of a job that is gone (host {lock.stale.get('host')}, "
               f"PID {lock.stale.get('pid')})")

    def release() -> None:
        lock.release()
        if made:
            with suppress(OSError):  # not empty: the run's results, parts or variants are in it
                job.output.rmdir()
    return release


def plan_run(job: Job) -> Plan:
    """Every check that can fail before work starts; raises ConfigError with what to fix."""
    try:
        info = inspect_model(job.model)
        sha = model_sha256(job.model, info)
        skipped: Counter = Counter()
        items = ItemTable.from_inputs(job.input, job.hdf5_dataset, skipped)
        classes = class_names(job.classes, info.metadata)
    except (ModelError, SourceError) as exc:
        raise ConfigError(lock_advice(job.input[0]) if is_lock_error(exc) else str(exc)) from None
    job = job.with_overrides(precision=scored_precision(job, info.metadata))
    if not items and not job.incremental:  # an incremental run may find nothing new: that is a success
        raise ConfigError(f"no images in {', '.join(map(str, job.input))}: folders are searched, with their "
                          f"sub-folders and .tar files, for {' '.join(sorted(IMAGE_EXTENSIONS))} files; "
                          "check --input (or input in the job file)")
    if info.num_classes is None:
        raise ConfigError(f"{job.model}: the first output needs a fixed class dimension, got {info.outputs}")
    if job.top_k > info.num_classes:
        raise ConfigError(f"top_k = {job.top_k} but the model has only {info.num_classes} classes")
    save = list(info.outputs) if "*" in job.save_outputs else list(job.save_outputs)
    unknown = [n for n in save if n not in info.outputs]
    if unknown:
        raise ConfigError(f"save_outputs names {unknown}, but the model's outputs are {list(info.outputs)}")
    shapes = {name: tuple(shape[1:]) for name, shape in info.outputs.items()}
    dynamic = [n for n in save if not all(isinstance(d, int) for d in shapes[n])]
    if dynamic:
        raise ConfigError(f"save_outputs: outputs {dynamic} have dynamic dimensions besides the batch")
    resolved = resolve(job)  # ConfigError where the backend's packages are missing
    backend, reason, job = resolved.backend, resolved.reason, resolved.job
    if backend == "torch" and job.precision == "int8":
        raise ConfigError("the torch backend cannot run INT8 (Q/DQ) models (onnx2torch has no quantized ops); "
                          "use backend = 'tensorrt' or 'onnxruntime' for int8, or precision = 'fp16'")
    decode, decode_reason = choose_decode(job.decode, backend, job.gpu_decoder)
    model = prepare_model(job, items)  # fp32: the job's model; else its variant, built once and cached
    gate_items = job_samples(job, items).gate if model != job.model else []
    fingerprint = _fingerprint(job, sha)
    if model != job.model:
        fingerprint["variant"] = model.name  # names source hash, precision, calibration hash and method
    changes = None
    if job.incremental:  # only what is new or changed since the last run, scored into OUTPUT/runs/<run>
        changes, items = plan_changes(job, items, fingerprint)
        job = job.with_overrides(output=changes.run_dir)
    elif (job.output / INDEX).exists():  # a nightly job that lost its flag would rescore the whole archive
        raise ConfigError(f"{job.output} holds the index of incremental runs ({INDEX}); pass --incremental (or set "
                          "incremental = true) to score what is new or changed since the last run, or choose "
                          "another --output for a full run")

    out = job.output
    if changes:
        _writable(out)
        remove_leftovers(out)
    marker = out / PARTS / "job.json"
    if (out / PARTS).exists() and (job.overwrite or not marker.exists()):
        shutil.rmtree(out / PARTS)  # --overwrite discards an unfinished run; parts without a job are nobody's
    existing = [name for name in RESULT_FILES if (out / name).exists()]
    if existing and not marker.exists() and not job.overwrite:  # with a parts folder, a run is unfinished
        raise ConfigError(f"{out} already holds a result ({', '.join(existing)}); "
                          "pass --overwrite to replace it or choose another --output")
    check_locking(out)  # network filesystems: fail now, naming HDF5_USE_FILE_LOCKING, not mid-run
    check = None
    if gate_items:  # reduced precision: compare with fp32 on held-out images before anything is scored
        check = {**gate(job, model, gate_items, backend, classes), "variant": variant_metadata(model)}

    done = key_array([])
    if marker.exists():
        before = json.loads(marker.read_text())
        if before != fingerprint:
            raise ConfigError(f"{out} holds an unfinished run of a different job ({differences(before, fingerprint)}); "
                              "rerun with its settings to finish it, pass --overwrite to discard it, or choose "
                              "another --output")
        done = done_keys(out)
    else:  # a previous result (--overwrite) stays until the new scores.h5 replaces it
        marker.parent.mkdir(exist_ok=True)
        write_json(marker, fingerprint)
    todo = items.without(done)
    return Plan(len(items), uuid.uuid4().hex[:12], backend, reason, sha, shapes, save, len(items) - len(todo),
                classes, changes, model=model, precision_check=check, decode=decode, decode_reason=decode_reason,
                skipped=dict(skipped), precision=job.precision, batch_size=job.batch_size, compile=job.compile,
                todo=todo, keys=items.keys)


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
    with _beside(gpu_decoder(plan.decode, job, device, comm.rank, cores, warm=items[:job.batch_size])) as opened:
        engine = open_engine(job, plan.backend, plan.model, threads, device, comm.rank)  # the decoder opens meanwhile
        timeline.mark("engine_ready")
        gpu = opened()  # None: CPU decode
        stats.device = engine.device_name  # e.g. "cuda:1 <GPU name>": the bound GPU's index and name
        writer = PartWriter(job.output, plan.run_id, comm.rank)
        stop.on_signal = lambda name: stopping(job, plan, comm.rank, f"{name} on rank {comm.rank}", writer, stop)
        progress = Progress(comm, total=plan.total, initial=plan.resumed)
        workers = job.workers or default_workers(cores, gpu)
        kind = job.worker_kind if gpu is None else "thread"  # a GPU decoder's workers only read
        with (decode_processes(kind, workers, cores, job.preprocess.shape, lambda text: log(comm.rank, text)) as procs,
              decode_executor(workers) as pool):  # the threads end first: none is left waiting on a closed process
            stats.workers, stats.gpu_threads = workers, len(gpu.lanes) if gpu else 0
            stats.worker_kind = "process" if procs else "thread"
            ahead = default_prefetch(workers, job.batch_size, stats.gpu_threads)
            comm.Barrier()
            start = time.perf_counter()
            decoded = stop.until_stopped(batches(items, job.preprocess, job.batch_size, pool, ahead,
                                                 job.decode_draft, gpu, procs))
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
