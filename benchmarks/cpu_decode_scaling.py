"""CPU decode across many cores: the pipeline's decode threads against decode processes, same images, same counts.

Why: on the GPU machines the CPU path decoded far below Pillow's per-core rate times the cores (decode only,
500x375 JPEGs: 924 img/s with 33 threads on a 32-core H200 host, 1,055 with 17 threads on a 16-core H100
host), which points at the interpreter lock the threads share; on the 2-core development VM threads beat
processes (docs/dev/decisions/0001). This measures both on the machine at hand, decode only (read, decode,
resize, normalise into the batch's array), batches in input order, two in flight:

- threads:   `pipeline.batches` with a `CpuDecoder` on `decode_executor(N)` (worker_kind = "thread");
- processes: the same with N decode processes (worker_kind = "process", the default from 4 cores a rank: each worker
  thread hands a share of the batch to a process, which decodes it into shared memory, and copies the rows back).
  Until then this benchmark measured processes of its own decoding straight into a shared batch array
  (h200-cpu-decode-scaling.json).

Rounds alternate between the two; the median of each is reported.

    python benchmarks/cpu_decode_scaling.py --workers 2 4 8 16 32 --input DIR --images 8192
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from batchscore.decode.cpu import CpuDecoder, decode_executor
from batchscore.decode.procs import decode_processes
from batchscore.pipeline import batches
from batchscore.preprocess import Preprocess
from batchscore.sources import Item, list_items
from batchscore.writer import write_json

ROOT = Path(__file__).resolve().parents[1]


def decode_rate(items: list[Item], spec: Preprocess, batch: int, workers: int, kind: str) -> float:
    """Images/s of the pipeline's decode with `workers` workers of `kind` ("thread" or "process", decode/procs.py)."""
    with (decode_processes(kind, workers, os.cpu_count() or 1, spec.shape, print) as procs,
          decode_executor(workers) as pool):
        start = time.perf_counter()
        for _ in batches(items, CpuDecoder(spec, pool, procs=procs), batch, prefetch=2):
            pass
        return len(items) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=ROOT / "data" / "sample", help="folder of images (or a tar)")
    ap.add_argument("--images", type=int, default=2048, help="images a round (the input's, repeated)")
    ap.add_argument("--workers", type=int, nargs="+", default=[os.cpu_count() or 1])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "cpu_decode_scaling.json")
    args = ap.parse_args()
    found = [it for it in list_items([args.input]) if it.key.lower().endswith((".jpg", ".jpeg"))]
    if not found:
        raise SystemExit(f"no JPEGs under {args.input} (python data/make_sample.py --out data/sample first)")
    items, spec = [found[i % len(found)] for i in range(args.images)], Preprocess()
    rows = []
    print(f"decode only, {args.images} JPEGs from {args.input}, batch {args.batch_size}, {os.cpu_count()} cores, "
          f"median of {args.rounds} alternating rounds (img/s)")
    print(f"{'workers':>8} {'threads':>9} {'processes':>10} {'ratio':>6}")
    for workers in args.workers:
        rates: dict[str, list[float]] = {"thread": [], "process": []}
        for _ in range(args.rounds):
            for kind, values in rates.items():
                values.append(decode_rate(items, spec, args.batch_size, workers, kind))
        t, p = (statistics.median(rates[k]) for k in ("thread", "process"))
        rows.append({"workers": workers, "threads_img_s": round(t, 1), "processes_img_s": round(p, 1),
                     "processes_over_threads": round(p / t, 3)})
        print(f"{workers:>8} {t:>9.1f} {p:>10.1f} {p / t:>5.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, {"benchmark": "cpu_decode_scaling", "input": str(args.input), "images": args.images,
                           "batch_size": args.batch_size, "cores": os.cpu_count(), "rounds": args.rounds,
                           "results": rows})
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
