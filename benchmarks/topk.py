"""The rank loop's top-k: `runner.topk` (k argmax passes; a partition above runner.ARGMAX_TOP_K) against a
stable sort of every class (its implementation until 2026-11-30), on the same logits, rounds alternating,
median of each.

Both give the same indices and probabilities (checked here on every input, ties included). The loop runs top-k
on every batch, beside the decode threads, so its time is CPU that decoding does not get.

    python benchmarks/topk.py                        # batch 256; 10, 1000 and 21843 classes; JSON in results/
    python benchmarks/topk.py --classes 1000 --k 5 16 32 --rounds 50
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from batchscore.runner import topk
from batchscore.writer import write_json

ROOT = Path(__file__).resolve().parents[1]


def sort_every_class(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: softmax, then a stable sort of every class."""
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    prob = np.exp(z)
    prob /= prob.sum(axis=1, keepdims=True)
    idx = np.argsort(-prob, axis=1, kind="stable")[:, :k]
    return idx.astype(np.int32), np.take_along_axis(prob, idx, axis=1)


def seconds(fn, logits: np.ndarray, k: int) -> float:  # noqa: ANN001 - one of the two top-k functions
    start = time.perf_counter()
    fn(logits, k)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--classes", type=int, nargs="+", default=[10, 1000, 21843])
    ap.add_argument("--k", type=int, nargs="+", default=[5])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "topk.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    print(f"top-k of a batch of {args.batch}, median of {args.rounds} alternating rounds (ms)")
    print(f"{'classes':>8} {'k':>4} {'sort all':>10} {'topk':>10} {'speed-up':>9}")
    for classes in args.classes:
        logits = rng.normal(size=(args.batch, classes)).astype(np.float16).astype(np.float32)  # FP16: many ties
        for k in args.k:
            if not all(np.array_equal(a, b) for a, b in zip(topk(logits, k), sort_every_class(logits, k))):
                raise SystemExit(f"{classes} classes, k = {k}: the two top-k functions disagree")
            times: dict[str, list[float]] = {"sort": [], "topk": []}
            for _ in range(args.rounds):
                times["sort"].append(seconds(sort_every_class, logits, k))
                times["topk"].append(seconds(topk, logits, k))
            sort_ms, topk_ms = (1e3 * statistics.median(times[n]) for n in ("sort", "topk"))
            rows.append({"classes": classes, "k": k, "sort_every_class_ms": round(sort_ms, 3),
                         "topk_ms": round(topk_ms, 3), "speedup": round(sort_ms / topk_ms, 2)})
            print(f"{classes:>8} {k:>4} {sort_ms:>10.2f} {topk_ms:>10.2f} {sort_ms / topk_ms:>8.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, {"benchmark": "topk", "batch": args.batch, "rounds": args.rounds,
                           "results": rows})
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
