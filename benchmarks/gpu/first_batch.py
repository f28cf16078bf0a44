"""One cold or warm start of the torch backend: activate (build or load the engine) and run one batch.

Prints one JSON line: the wall-clock times at which the imports were done, the engine was active and
the first batch's outputs were on the host, the cache status and the engine's setup seconds (artifact
load and compile), so a slow start can be split into its parts. bench_engine.py starts this as a fresh
process and times it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch  # noqa: F401 - imported here so that its import time is counted as import time

from batchscore.engines import EngineOptions, create_engine

IMPORTED_AT = time.time()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--cache-dir", type=Path, required=True)
    ap.add_argument("--compile", default="compiled")
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()
    engine = create_engine("torch", args.model, EngineOptions(args.batch_size, device=0, precision=args.precision,
                                                             compile=args.compile, cache_dir=args.cache_dir))
    engine.activate()
    active = time.time()
    batch = np.random.default_rng(0).standard_normal((args.batch_size, 3, 224, 224), dtype=np.float32)
    out = engine.infer(batch)
    first = time.time()
    print(json.dumps({"imported_at": IMPORTED_AT, "active_at": active, "first_batch_at": first,
                      "cache": engine.cache_status, "setup_seconds": engine.setup_seconds,
                      "finite": bool(np.isfinite(next(iter(out.values()))).all())}), flush=True)
    engine.deactivate()


if __name__ == "__main__":
    main()
