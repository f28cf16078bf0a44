"""One cold or warm start of the torch backend: activate (build or load the engine) and run one batch.

Prints one JSON line: the wall-clock times at which torch and then batchscore were imported, the engine
was active and the first batch's outputs were on the host, the cache status, the engine's setup seconds
(package load, or build), its seconds per activation step and any torch.compile phase times, so that a
slow start can be split into its parts. bench_engine.py starts this as a fresh process and times it; with
`--batches N` the process then measures the engine's images/s over N host batches, as a rank would run it
(a compiled package is loaded, never built, in the process that scores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

TORCH_AT = time.time()

from batchscore.engines import Engine, EngineOptions, create_engine  # noqa: E402 - timed after torch

IMPORTED_AT = time.time()


def host_batches(batch_size: int, count: int = 4) -> list[np.ndarray]:
    """Seeded random batches in host memory, as decoded batches arrive."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal((batch_size, 3, 224, 224), dtype=np.float32) for _ in range(count)]


def throughput(engine: Engine, host: list[np.ndarray], batches: int) -> dict:
    """The active engine fed `batches` host batches (after three of warm-up): wall-clock and GPU-only images/s."""
    list(engine.infer_iter(host[:3]))  # warm-up (cuDNN autotuning in eager)
    engine.compute_ms = 0.0
    t0 = time.perf_counter()
    outputs = list(engine.infer_iter([host[i % len(host)] for i in range(batches)]))
    wall = time.perf_counter() - t0
    images = batches * len(host[0])
    return {"img_s": round(images / wall, 1), "gpu_only_img_s": round(images / (engine.compute_ms / 1e3), 1),
            "finite": bool(all(np.isfinite(next(iter(o.values()))).all() for o in outputs))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--cache-dir", type=Path, required=True)
    ap.add_argument("--compile", default="compiled")
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=0, help="then measure images/s over this many batches")
    args = ap.parse_args()
    batch = np.full((args.batch_size, 3, 224, 224), 0.5, dtype=np.float32)  # as a decoded batch: made already
    engine = create_engine("torch", args.model, EngineOptions(args.batch_size, device=0, precision=args.precision,
                                                             compile=args.compile, cache_dir=args.cache_dir))
    created = time.time()
    engine.activate()
    active = time.time()
    out = engine.infer(batch)
    first = time.time()
    try:  # torch.compile's own seconds per phase (a private helper: absent in some versions)
        compile_times = torch._dynamo.utils.compile_times(repr="csv", aggregate=True)
    except (AttributeError, TypeError):
        compile_times = ([], [])
    print(json.dumps({"torch_at": TORCH_AT, "imported_at": IMPORTED_AT, "created_at": created,
                      "active_at": active, "first_batch_at": first,
                      "cache": engine.cache_status, "setup_seconds": engine.setup_seconds,
                      "phases": engine.start_phases,
                      "compile_phases": dict(zip(compile_times[0], map(float, compile_times[1]))),
                      "finite": bool(np.isfinite(next(iter(out.values()))).all()),
                      **({"throughput": throughput(engine, host_batches(args.batch_size), args.batches)}
                         if args.batches else {})}), flush=True)
    engine.deactivate()


if __name__ == "__main__":
    main()
