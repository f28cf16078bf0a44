"""The scoring run: rank 0 plans and checks, every rank scores its shard, rank 0 merges and reports."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
from mpi4py import MPI

from . import __version__
from .comm import Progress, cores_for_rank, log, placement
from .config import ConfigError, Job
from .engines import EngineOptions, choose_backend, create_engine
from .model import ModelError, inspect_model, model_sha256
from .pipeline import Batch, batches, decode_executor
from .report import RankStats, format_table, summarize
from .sources import Item, SourceError, list_items, shard
from .writer import PARTS, PartWriter, done_keys, merge, write_json

RESULT_FILES = ("scores.h5", "summary.json")


@dataclass
class Plan:
    """Decided once by rank 0 and broadcast, so every rank works from the same facts."""

    todo: list[Item]
    all_keys: list[str]
    run_id: str
    backend: str
    backend_reason: str
    model_sha256: str
    output_shapes: dict[str, tuple[int, ...]]
    save_outputs: list[str]
    resumed: int
    classes: list[str]

    def empty_outputs(self) -> dict[str, np.ndarray]:
        """Zero-row outputs for a batch in which no image decoded."""
        return {name: np.empty((0, *shape), np.float32) for name, shape in self.output_shapes.items()}


def _fingerprint(job: Job, sha: str) -> dict:
    """What must match for a rerun to continue an interrupted run's parts."""
    return {"model_sha256": sha, "precision": job.precision, "top_k": job.top_k,
            "save_outputs": list(job.save_outputs), "preprocess": asdict(job.preprocess),
            "input": [str(p) for p in job.input]}


def _read_classes(path: Path | None, metadata: dict[str, str]) -> list[str]:
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"classes file not found: {path}")
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return metadata["classes"].split(",") if "classes" in metadata else []


def plan_run(job: Job) -> Plan:
    """Every check that can fail before work starts; raises ConfigError with what to fix."""
    try:
        info = inspect_model(job.model)
        sha = model_sha256(job.model)
        items = list_items(job.input, job.hdf5_dataset)
    except (ModelError, SourceError) as exc:
        raise ConfigError(str(exc)) from None
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
    classes = _read_classes(job.classes, info.metadata)
    backend, reason = choose_backend(job.backend)

    out = job.output
    existing = [name for name in RESULT_FILES if (out / name).exists()]
    if existing and not job.overwrite:
        raise ConfigError(f"{out} already holds a result ({', '.join(existing)}); "
                          "pass --overwrite to replace it or choose another --output")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {out} is not writable ({exc.strerror}); "
                          "choose another --output") from None
    if job.overwrite:
        shutil.rmtree(out / PARTS, ignore_errors=True)
        for name in RESULT_FILES:
            (out / name).unlink(missing_ok=True)

    fingerprint = _fingerprint(job, sha)
    marker = out / PARTS / "job.json"
    done: set[str] = set()
    if marker.exists():
        if json.loads(marker.read_text()) != fingerprint:
            raise ConfigError(f"{out} holds an unfinished run of a different job (model, precision or settings "
                              "differ); pass --overwrite to discard it or choose another --output")
        done = done_keys(out)
    else:
        marker.parent.mkdir(exist_ok=True)
        write_json(marker, fingerprint)
    todo = [it for it in items if it.key not in done]
    return Plan(todo, [it.key for it in items], uuid.uuid4().hex[:12], backend, reason, sha,
                shapes, save, len(items) - len(todo), classes)


def topk(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and softmax probabilities of the k best classes, best first."""
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    prob = np.exp(z)
    prob /= prob.sum(axis=1, keepdims=True)
    idx = np.argsort(-prob, axis=1, kind="stable")[:, :k]
    return idx.astype(np.int32), np.take_along_axis(prob, idx, axis=1)


def _expand(batch: Batch, values: np.ndarray, fill: float) -> np.ndarray:
    """Per-key rows from rows of the good images only; error rows get `fill`."""
    full = np.full((len(batch.keys), *values.shape[1:]), fill, dtype=values.dtype)
    full[batch.ok] = values
    return full


def score_shard(job: Job, plan: Plan, comm: MPI.Comm) -> RankStats:
    """This rank's loop: decode ahead → infer → top-k → commit parts; returns its statistics."""
    where = placement(comm)
    cores = cores_for_rank(where.local_size)
    threads = job.threads or cores
    workers = job.workers or (cores if cores > 1 else 0)
    items = shard(plan.todo, comm.rank, comm.size)
    stats = RankStats(comm.rank, local_rank=where.local_rank, threads=threads, workers=workers)
    engine = create_engine(plan.backend, job.model,
                           EngineOptions(job.batch_size, threads, device=where.local_rank)).activate()
    stats.device = engine.device_name
    writer = PartWriter(job.output, plan.run_id, comm.rank)
    progress = Progress(comm, total=len(plan.all_keys), initial=plan.resumed)
    comm.Barrier()
    start = time.perf_counter()
    with decode_executor(workers) as pool:
        wait_start = time.perf_counter()
        for n, batch in enumerate(batches(items, job.preprocess, job.batch_size, pool, prefetch=2 * workers + 1)):
            stats.stages["wait"] += time.perf_counter() - wait_start
            outputs = engine.infer(batch.tensors) if batch.ok.any() else plan.empty_outputs()
            idx, score = topk(next(iter(outputs.values())), job.top_k)
            writer.add(batch.keys, _expand(batch, idx, -1), _expand(batch, score, np.nan), batch.errors,
                       {name: _expand(batch, outputs[name], np.nan) for name in plan.save_outputs})
            if (n + 1) % job.commit_every == 0:
                writer.commit()
            stats.images += len(batch.keys)
            stats.failed += int((~batch.ok).sum())
            stats.stages["read"] += batch.read_seconds
            stats.stages["decode"] += batch.decode_seconds
            progress.update(stats.images)
            wait_start = time.perf_counter()
    writer.commit()
    stats.seconds = time.perf_counter() - start
    stats.ok = stats.images - stats.failed
    stats.stages["infer"] = engine.infer_seconds
    stats.stages["write"] = writer.seconds
    engine.deactivate()
    progress.close(stats.images)
    return stats


def finish(job: Job, plan: Plan, stats: list[RankStats], wall_start: float) -> dict:
    """Rank 0: merge the parts into scores.h5, write summary.json, print the table."""
    info = {
        "version": __version__, "backend": plan.backend, "backend_reason": plan.backend_reason,
        "precision": job.precision, "batch_size": job.batch_size, "top_k": job.top_k,
        "model": str(job.model), "model_sha256": plan.model_sha256, "run_id": plan.run_id,
        "job_file": str(job.source or ""), "output": str(job.output / "scores.h5"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    attrs = {**{k: v for k, v in info.items() if k != "output"}, "ranks": len(stats),
             "preprocess": json.dumps(asdict(job.preprocess)),
             "topk_score": f"softmax probabilities of output '{next(iter(plan.output_shapes))}'",
             "status_codes": "0 = ok, 1 = error (see 'error')"}
    if plan.classes:
        attrs["classes"] = plan.classes
    path = merge(job.output, plan.all_keys, attrs)
    with h5py.File(path, "r") as f:
        failed = int((f["status"][:] != 0).sum())
    summary = summarize(stats, wall_seconds=time.perf_counter() - wall_start, total_keys=len(plan.all_keys),
                        failed_total=failed, resumed=plan.resumed, info=info)
    write_json(job.output / "summary.json", summary)
    shutil.rmtree(job.output / PARTS)  # scores.h5 now holds every row; the parts were only for resume
    print(format_table(summary), flush=True)
    return summary


def run(job: Job, comm: MPI.Comm) -> dict | None:
    """Score a job on every rank of `comm`; returns the summary on rank 0 (None elsewhere)."""
    wall_start = time.perf_counter()
    plan, error = None, None
    if comm.rank == 0:
        try:
            plan = plan_run(job)
        except ConfigError as exc:
            error = str(exc)
    plan, error = comm.bcast((plan, error), root=0)
    if error:
        raise ConfigError(error)
    if comm.rank == 0:
        log(0, f"{len(plan.all_keys)} images ({plan.resumed} already done), {comm.size} rank(s), "
               f"backend {plan.backend}: {plan.backend_reason}")
    stats = score_shard(job, plan, comm)
    gathered = comm.gather(stats, root=0)
    return finish(job, plan, gathered, wall_start) if comm.rank == 0 else None
