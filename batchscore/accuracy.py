"""Accuracy of reduced precision against FP32, measured the way the seeds do, and the INT8 gate.

`accuracy` scores the images INT8 calibration never saw with every requested precision (each batch
is decoded once and run through all of them), on every MPI rank, and rank 0 prints the table:
top-1/top-5 and their change from FP32, top-1 agreement with FP32 and the largest softmax
probability difference. The gate is the same measurement on a small held-out sample, run by
rank 0 before a reduced-precision job scores anything.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from mpi4py import MPI

from .comm import cores_for_rank, log, placement
from .config import ConfigError, Job
from .engines import EngineOptions, create_engine, resolve
from .model import ModelError, class_names, inspect_model
from .decode.cpu import CpuDecoder, decode_executor
from .pipeline import batches
from .precision import job_samples, prepare_model, variant_metadata
from .preprocess import Preprocess
from .sources import Item, SourceError, list_items, shard
from .writer import write_json

REFERENCE = "fp32"
T = TypeVar("T")


@dataclass
class Predictions:
    """Logits of several models for the same decoded images (failed decodes left out), in key order."""

    keys: list[str]
    logits: dict[str, np.ndarray]


def predict(models: dict[str, Path], items: list[Item], spec: Preprocess, backend: str, batch_size: int,
            threads: int, workers: int, draft: bool = False) -> Predictions:
    """Decode each batch once and run every model (keyed by its precision) on it; the first output is
    taken as the logits."""
    engines = {name: create_engine(backend, path, EngineOptions(batch_size, threads, precision=name)).activate()
               for name, path in models.items()}
    keys: list[str] = []
    logits: dict[str, list[np.ndarray]] = {name: [] for name in models}
    try:
        with decode_executor(workers) as pool:
            for batch in batches(items, CpuDecoder(spec, pool, draft), batch_size):
                if not batch.ok.any():
                    continue
                keys.extend(k for k, ok in zip(batch.keys, batch.ok) if ok)
                for name, engine in engines.items():
                    logits[name].append(next(iter(engine.infer(batch.tensors).values())))
    finally:
        for engine in engines.values():
            engine.deactivate()
    return Predictions(keys, {name: np.concatenate(v) if v else np.empty((0, 0), np.float32)
                              for name, v in logits.items()})


def read_labels(path: Path, classes: list[str]) -> dict[str, int]:
    """`key,label` CSV → class index per key; a label is a class name (or an index when no names are known)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ConfigError(f"labels file {path} cannot be read ({exc.strerror})") from None
    if rows and not {"key", "label"} <= set(rows[0]):
        raise ConfigError(f"labels file {path} needs a header 'key,label', found {','.join(rows[0])}")
    index = {name: i for i, name in enumerate(classes)}
    labels = {}
    for row in rows:
        label = row["label"].strip()
        if label in index:
            labels[row["key"]] = index[label]
        elif label.isdigit() and (not classes or int(label) < len(classes)):
            labels[row["key"]] = int(label)
        else:
            raise ConfigError(f"labels file {path}: label {label!r} of {row['key']!r} is not a class of the model "
                              f"({', '.join(classes) or 'no class names: set classes or use class indices'})")
    return labels


def label_array(labels: dict[str, int], keys: list[str], path: Path) -> np.ndarray:
    """Class index per key, -1 where the labels file has none; an error when it matches no key at all."""
    array = np.array([labels.get(k, -1) for k in keys], dtype=np.int64)
    if keys and not (array >= 0).any():
        raise ConfigError(f"labels file {path} names none of the {len(keys)} images checked (image keys look like "
                          f"{keys[0]!r}, label keys like {next(iter(labels), '')!r})")
    return array


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def compare(logits: dict[str, np.ndarray], labels: np.ndarray | None) -> dict[str, dict[str, Any]]:
    """Per precision: top-1/top-5 (%, labelled images) and change from FP32 (points), top-1 agreement
    with FP32 (%, all images) and the largest absolute softmax probability difference to FP32."""
    ref = logits[REFERENCE]
    k = min(5, ref.shape[1])
    ranked = {name: np.argsort(-z, axis=1, kind="stable")[:, :k] for name, z in logits.items()}
    ref_prob = softmax(ref)
    has = labels >= 0 if labels is not None else np.zeros(len(ref), bool)
    rows: dict[str, dict[str, Any]] = {}
    for name, z in logits.items():
        top = ranked[name]
        row: dict[str, Any] = {"images": len(z), "labelled": int(has.sum()), "top1": None, "top5": None}
        if has.any():
            row["top1"] = 100.0 * float(np.mean(top[has, 0] == labels[has]))
            row["top5"] = 100.0 * float(np.mean((top[has] == labels[has, None]).any(axis=1)))
        row["top1_agreement"] = 100.0 * float(np.mean(top[:, 0] == ranked[REFERENCE][:, 0])) if len(z) else None
        row["max_prob_diff"] = float(np.abs(softmax(z) - ref_prob).max()) if len(z) else None
        rows[name] = row
    for row in rows.values():
        for metric in ("top1", "top5"):
            ref_value = rows[REFERENCE][metric]
            row[f"{metric}_delta"] = None if row[metric] is None else row[metric] - ref_value
    return rows


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """The comparison as the seeds print it: one line per precision, FP32 first."""
    def pct(v: float | None, signed: bool = False) -> str:
        return "n/a" if v is None else (f"{v:+.2f}" if signed else f"{v:.2f}%")

    lines = [f"{'precision':<9} {'images':>6} {'top-1':>8} {'Δtop-1':>7} {'top-5':>8} {'Δtop-5':>7} "
             f"{'agree':>8} {'max|Δp|':>8}"]
    for name, r in rows.items():
        lines.append(f"{name:<9} {r['images']:>6} {pct(r['top1']):>8} {pct(r['top1_delta'], True):>7} "
                     f"{pct(r['top5']):>8} {pct(r['top5_delta'], True):>7} {pct(r['top1_agreement']):>8} "
                     f"{r['max_prob_diff'] if r['max_prob_diff'] is not None else float('nan'):>8.4f}")
    labelled = next(iter(rows.values()))["labelled"]
    lines.append(f"top-1/top-5 on {labelled} labelled image(s); Δ in points vs {REFERENCE}; agree = same top-1 "
                 f"as {REFERENCE}; max|Δp| = largest softmax probability difference to {REFERENCE}")
    return "\n".join(lines)


def gate(job: Job, variant: Path, held_out: list[Item], backend: str, classes: list[str]) -> dict[str, Any]:
    """Compare the variant with FP32 on held-out images before scoring; ConfigError when top-1 drops more
    than `max_top1_drop` points (labelled top-1 when labels are given, else disagreement with FP32)."""
    preds = predict({REFERENCE: job.model, job.precision: variant}, held_out, job.preprocess, backend,
                    job.batch_size, job.threads, job.workers, job.decode_draft)
    if not preds.keys:
        raise ConfigError(f"accuracy gate: none of the {len(held_out)} held-out images could be decoded")
    labels = label_array(read_labels(job.labels, classes), preds.keys, job.labels) if job.labels else None
    row = compare(preds.logits, labels)[job.precision]
    labelled = row["top1"] is not None
    drop = round(-row["top1_delta"] if labelled else 100.0 - row["top1_agreement"], 6) + 0.0  # no -0.0
    figures = {
        "precision": job.precision, "images": row["images"], "labelled": row["labelled"],
        "basis": "labelled top-1" if labelled else f"top-1 agreement with {REFERENCE}",
        "fp32_top1": row["top1"] - row["top1_delta"] if labelled else None, "top1": row["top1"],
        "top1_drop": drop, "top1_agreement": row["top1_agreement"], "max_prob_diff": row["max_prob_diff"],
        "max_top1_drop": job.max_top1_drop,
    }
    measured = (f"top-1 {row['top1']:.2f}% vs {figures['fp32_top1']:.2f}% in fp32" if labelled
                else f"top-1 agrees with fp32 on {row['top1_agreement']:.2f}% (no labels given)")
    if drop > job.max_top1_drop:
        raise ConfigError(
            f"accuracy gate: the {job.precision} model loses {drop:.2f} top-1 points on {row['images']} held-out "
            f"images ({measured}), more than max_top1_drop = {job.max_top1_drop}; nothing was scored. "
            "Calibrate on more or more representative images (calib_images, calib_input), try another "
            "calib_method, use precision = \"fp16\" or \"fp32\", or raise max_top1_drop")
    log(0, f"accuracy gate passed: {job.precision} {measured} on {row['images']} held-out images")
    return figures


def on_root(comm: MPI.Comm, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) on rank 0, its result on every rank; its ConfigError too, so no rank waits forever."""
    result, error = None, None
    if comm.rank == 0:
        try:
            result = fn(*args)
        except ConfigError as exc:
            error = str(exc)
    result, error = comm.bcast((result, error), root=0)
    if error:
        raise ConfigError(error)
    return result


def _prepare(job: Job, precisions: list[str]) -> tuple[dict[str, Path], list[Item], dict[str, int], int]:
    """Rank 0: the model file of every precision, the images to evaluate, their labels, the calibration count."""

    try:
        info = inspect_model(job.model)
        items = list_items(job.input, job.hdf5_dataset)
        classes = class_names(job.classes, info.metadata)
    except (ModelError, SourceError) as exc:
        raise ConfigError(str(exc)) from None
    samples = job_samples(job, items)
    models = {p: prepare_model(job.with_overrides(precision=p), items) for p in precisions}
    labels = read_labels(job.labels, classes) if job.labels else {}
    return models, samples.unseen, labels, len(items) - len(samples.unseen)


def run_accuracy(job: Job, precisions: list[str], json_path: Path | None, comm: MPI.Comm) -> dict | None:
    """The accuracy table over all ranks; rank 0 prints it, writes the JSON and returns it."""
    precisions = [REFERENCE] + [p for p in dict.fromkeys(precisions) if p != REFERENCE]
    resolved = resolve(job, gpu=False)  # before any variant is built; `predict` runs its engines on the CPU
    backend, job = resolved.backend, resolved.job
    models, items, labels, calibration = on_root(comm, _prepare, job, precisions)
    where = placement(comm)
    cores = cores_for_rank(where.local_size)
    mine = predict(models, shard(items, comm.rank, comm.size), job.preprocess, backend, job.batch_size,
                   job.threads or cores, job.workers or (cores if cores > 1 else 0), job.decode_draft)
    parts = comm.gather(mine, root=0)
    if comm.rank != 0:
        return None
    keys = [k for p in parts for k in p.keys]
    if not keys:
        raise ConfigError(f"none of the {len(items)} images to evaluate could be decoded")
    logits = {name: np.concatenate([p.logits[name] for p in parts if len(p.keys)]) for name in models}
    rows = compare(logits, label_array(labels, keys, job.labels) if labels else None)
    result = {
        "model": str(job.model), "job_file": str(job.source or ""), "backend": backend, "ranks": comm.size,
        "images": {"input": len(items) + calibration, "evaluated": len(keys), "failed": len(items) - len(keys),
                   "left_out_as_calibration": calibration, "labelled": rows[REFERENCE]["labelled"]},
        "models": {p: {"path": str(path), **variant_metadata(path)} for p, path in models.items()},
        "reference": REFERENCE, "precisions": rows,
    }
    out = json_path or job.output / "accuracy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)
    print(format_table(rows), flush=True)
    print(f"{len(keys)} images evaluated ({calibration} calibration images left out); JSON: {out}", flush=True)
    return result
