"""Engine-only throughput (`batchscore bench`), trtexec-style, on every rank at once.

Synthetic non-zero input (seeded normal noise: an all-zero input can take shortcuts), a warm-up,
then the median of timed repeats of `Engine.infer` (host array in, host arrays out, so the
copies a scoring run pays are included). Sweeps batch sizes 1, 2, 4, … up to a maximum or until
the device runs out of memory (reported as the sweep's end, not a crash), for each precision.
Each point gets its own engine built for that batch size, as a scoring run with that batch size
would (TensorRT: one plan per size, kept in the engine cache).

Under `mpiexec -n N` every rank measures the same point at the same time (a barrier starts each
one); rank 0 reports per-rank and aggregate images/s and the scaling efficiency against a
one-rank figure: from `--baseline` (an earlier one-rank bench JSON), else measured in the same
run with rank 0 alone while the other ranks wait.
"""

from __future__ import annotations

import json
import platform
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mpi4py import MPI

from . import __version__
from .comm import cores_for_rank, log, placement
from .config import ConfigError, Job
from .engines import GPU_BACKENDS, EngineOptions, create_engine, resolve
from .model import ModelError, inspect_model, model_sha256

_OOM = re.compile(r"out ?of ?memory|failed to allocate|cudaErrorMemoryAllocation", re.IGNORECASE)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the ways a framework says a batch did not fit (MemoryError, CUDA/TensorRT/ORT messages)."""
    return isinstance(exc, MemoryError) or bool(_OOM.search(f"{type(exc).__name__} {exc}"))


def batch_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, … up to max_batch, and max_batch itself when it is no power of two."""
    sizes = [1 << i for i in range(max_batch.bit_length()) if 1 << i <= max_batch]
    return sizes + ([max_batch] if sizes[-1] != max_batch else [])


@dataclass(frozen=True)
class Settings:
    """One sweep's settings, identical on every rank."""

    model: Path
    backend: str
    precisions: tuple[str, ...]
    sizes: tuple[int, ...]
    warmup: int
    repeats: int
    threads: int
    compile: str
    cache_dir: Path | None
    share_gpus: bool


def synthetic_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Seeded standard-normal float32: non-zero, about the range of normalised images."""
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def measure(engine, batch: np.ndarray, warmup: int, repeats: int) -> dict:  # noqa: ANN001 - Engine
    """Median latency of `repeats` timed calls after `warmup` untimed ones, with the copy/compute split."""
    for _ in range(warmup):
        engine.infer(batch)
    latency, split = [], []
    for _ in range(repeats):
        before = engine.stage_seconds()
        start = time.perf_counter()
        engine.infer(batch)
        latency.append(time.perf_counter() - start)
        after = engine.stage_seconds()
        split.append([after[k] - before[k] for k in ("h2d", "infer", "d2h")])
    median = float(np.median(latency))
    h2d, compute, d2h = np.median(np.array(split), axis=0)
    return {"images_per_s": len(batch) / median, "latency_ms": median * 1e3,
            "latency_p90_ms": float(np.percentile(latency, 90)) * 1e3,
            "h2d_ms": float(h2d) * 1e3, "compute_ms": float(compute) * 1e3, "d2h_ms": float(d2h) * 1e3}


def _point(settings: Settings, model: Path, precision: str, size: int, shape: tuple[int, ...],
           device: int | None) -> dict:
    """One (precision, batch size) on this rank: {"images_per_s": …} or {"oom": reason}."""
    options = EngineOptions(size, settings.threads, device=device, precision=precision,
                            compile=settings.compile, cache_dir=settings.cache_dir)
    engine = create_engine(settings.backend, model, options)
    try:
        engine.activate()
        return {**measure(engine, synthetic_input((size, *shape)), settings.warmup, settings.repeats),
                "device": engine.device_name}
    except Exception as exc:  # noqa: BLE001 - only out-of-memory is expected; anything else re-raised
        if not is_out_of_memory(exc):
            raise
        return {"oom": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}"}
    finally:
        engine.deactivate()


def _variant(job: Job, precision: str) -> Path:
    """The model file for `precision`: the source for fp32, else precision.prepare_model's cached variant."""
    if precision == "fp32":
        return job.model
    from .precision import prepare_model

    return prepare_model(job.with_overrides(precision=precision))


def read_baseline(path: Path) -> dict[tuple[str, int], float]:
    """(precision, batch size) → one-rank images/s from an earlier bench JSON; ConfigError naming `path`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a bench JSON ({exc})") from None
    if data.get("ranks") != 1:
        raise ConfigError(f"{path}: made with {data.get('ranks')} ranks; give a one-rank bench JSON")
    return {(r["precision"], r["batch_size"]): r["images_per_s"] for r in rows if "images_per_s" in r}


def sweep(job: Job, settings: Settings, comm: MPI.Comm, baseline: dict[tuple[str, int], float]) -> dict | None:
    """Run the sweep on every rank; returns the result document on rank 0 (None elsewhere)."""
    error, models, shape = "", {}, ()
    if comm.rank == 0:
        try:
            info = inspect_model(settings.model)
            shape = tuple(info.input_shape[1:])
            if not all(isinstance(d, int) for d in shape):
                raise ConfigError(f"{settings.model}: input dimensions {shape} besides the batch must be fixed")
            models = {p: _variant(job, p) for p in settings.precisions}
        except (ConfigError, ModelError) as exc:
            error = str(exc)
    error, models, shape = comm.bcast((error, models, shape), root=0)
    if error:
        raise ConfigError(error)
    where = placement(comm)
    gpu = None
    if settings.backend in GPU_BACKENDS:
        from .gpu import bind_gpu

        gpu = bind_gpu(comm, settings.share_gpus)  # collective
    device = gpu.index if gpu else None
    results: list[dict] = []
    for precision in settings.precisions:
        for size in settings.sizes:
            alone = None
            if comm.size > 1 and (precision, size) not in baseline:
                comm.Barrier()
                alone = _point(settings, models[precision], precision, size, shape, device) if comm.rank == 0 else None
            comm.Barrier()
            mine = _point(settings, models[precision], precision, size, shape, device)
            rows = comm.gather(mine, root=0)
            oom = comm.bcast(next((r["oom"] for r in rows if "oom" in r), "") if comm.rank == 0 else None, root=0)
            if comm.rank == 0:
                results.append(_row(precision, size, rows, alone, baseline, oom))
            if oom:
                if comm.rank == 0:
                    log(0, f"{precision}: batch {size} does not fit ({oom}); sweep stops there")
                break
    if comm.rank != 0:
        return None
    return {
        "kind": "bench", "version": __version__, "model": str(settings.model),
        "model_sha256": model_sha256(settings.model), "backend": settings.backend,
        "device": next((r["device"] for r in results if "device" in r), ""), "host": platform.node(),
        "ranks": comm.size, "local_ranks": where.local_size, "threads_per_rank": settings.threads,
        "input_shape": list(shape), "warmup": settings.warmup, "repeats": settings.repeats,
        "baseline": "given" if baseline else ("measured" if comm.size > 1 else "this run"),
        "results": results,
    }


def _row(precision: str, size: int, rows: list[dict], alone: dict | None, baseline: dict, oom: str) -> dict:
    """Rank 0's table row for one point: aggregate over ranks, efficiency against one rank."""
    row: dict = {"precision": precision, "batch_size": size}
    if oom:
        return {**row, "oom": oom}
    per_rank = [r["images_per_s"] for r in rows]
    first = rows[0]
    row.update(images_per_s=sum(per_rank), latency_ms=float(np.median([r["latency_ms"] for r in rows])),
               latency_p90_ms=max(r["latency_p90_ms"] for r in rows),
               h2d_ms=first["h2d_ms"], compute_ms=first["compute_ms"], d2h_ms=first["d2h_ms"], device=first["device"])
    if len(rows) > 1:
        one = baseline.get((precision, size)) or (alone or {}).get("images_per_s", 0.0)
        row.update(per_rank_images_per_s=per_rank, one_rank_images_per_s=one,
                   scaling_efficiency=sum(per_rank) / (len(rows) * one) if one else None)
    return row


def format_bench(doc: dict) -> str:
    """The sweep as a plain-text table (one line per point)."""
    multi = doc["ranks"] > 1
    lines = [f"batchscore bench {doc['version']}  model={doc['model']}  backend={doc['backend']}  "
             f"device={doc['device']}  ranks={doc['ranks']}  threads/rank={doc['threads_per_rank']}  "
             f"warm-up {doc['warmup']}, median of {doc['repeats']}", "",
             f"{'precision':<9} {'batch':>6} {'img/s':>10} {'latency ms':>11} {'p90 ms':>9} {'h2d ms':>8} "
             f"{'compute ms':>10} {'d2h ms':>8}" + (f" {'1-rank img/s':>13} {'efficiency':>10}" if multi else "")]
    for r in doc["results"]:
        head = f"{r['precision']:<9} {r['batch_size']:>6} "
        if "oom" in r:
            lines.append(head + f"out of memory: {r['oom']}")
            continue
        line = (head + f"{r['images_per_s']:>10.1f} {r['latency_ms']:>11.3f} {r['latency_p90_ms']:>9.3f} "
                f"{r['h2d_ms']:>8.3f} {r['compute_ms']:>10.3f} {r['d2h_ms']:>8.3f}")
        if multi:
            eff = r["scaling_efficiency"]
            line += f" {r['one_rank_images_per_s']:>13.1f} {(f'{eff:.1%}' if eff is not None else '-'):>10}"
        lines.append(line)
    if multi:
        lines += ["", f"img/s is the sum over {doc['ranks']} ranks measuring at once; efficiency = "
                      f"img/s / ({doc['ranks']} × the one-rank figure, {doc['baseline']})"]
    return "\n".join(lines)


def run_bench(job: Job, precisions: Sequence[str], sizes: Sequence[int], warmup: int, repeats: int,
              comm: MPI.Comm, baseline: dict[tuple[str, int], float] | None = None) -> dict | None:
    """Sweep `sizes` × `precisions` with the job's model, backend and threads on every rank at once; returns the
    result document on rank 0 (None elsewhere). `baseline`: one-rank images/s by (precision, batch size), from
    `read_baseline`; points without one are measured on rank 0 alone."""
    if not job.model.is_file():
        raise ConfigError(f"model not found: {job.model}")
    resolved = resolve(job)
    backend, job = resolved.backend, resolved.job
    threads = job.threads or cores_for_rank(placement(comm).local_size)
    settings = Settings(job.model, backend, tuple(dict.fromkeys(precisions)), tuple(sizes), warmup, repeats,
                        threads, job.compile, job.cache_dir, job.share_gpus)
    return sweep(job, settings, comm, baseline or {})  # every rank runs it: same barriers
