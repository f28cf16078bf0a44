"""One cold or warm start of the torch backend: activate (build or load the engine) and run one batch.

Prints one JSON line: the wall-clock times at which torch and then batchscore were imported, the engine
was active and the first batch's outputs were on the host, the cache status, the engine's setup seconds
(package load, or build), its seconds per activation step and any torch.compile phase times, so that a
slow start can be split into its parts. bench_engine.py starts this as a fresh process and times it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

TORCH_AT = time.time()

from batchscore.engines import EngineOptions, create_engine  # noqa: E402 - timed after torch

IMPORTED_AT = time.time()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--cache-dir", type=Path, required=True)
    ap.add_argument("--compile", default="compiled")
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--batch-size", type=int, default=256)
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
                      "finite": bool(np.isfinite(next(iter(out.values()))).all())}), flush=True)
    engine.deactivate()


if __name__ == "__main__":
    main()
