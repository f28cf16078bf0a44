"""Reading tar shards: one read per image (the workers each seek to their member) against the batch's
read-ahead (`reading.read_ahead`: one sequential read per run of members) and against a read per share
of SHARE_ROWS members, the shares at once (what decode processes do), same shard, same workers.

The read stage alone (no decode), batch by batch as scoring reads them: per image, `workers` threads
each read their batch's members one by one; read-ahead, one thread reads the batch's span and the
members are sliced from it. Each round starts with the page cache dropped (root only; otherwise the
rounds read from the cache, which the JSON says), so the disk or filesystem is really read. Rounds
alternate between the two ways; the median of each is reported.

    python benchmarks/tar_read.py                         # 4,096 members, JSON in results/
    python benchmarks/tar_read.py --images 8192 --workers 8 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from batchscore.decode.cpu import SHARE_ROWS
from batchscore.reading import read_ahead, read_item
from batchscore.sources import list_items
from batchscore.writer import write_json

ROOT = Path(__file__).resolve().parents[1]


def make_shard(path: Path, images: int) -> int:
    """A tar of `images` members, the sample's JPEGs in turn under unique names; returns its size in bytes."""
    sample = sorted((ROOT / "data" / "sample").rglob("*.jpg")) if (ROOT / "data" / "sample").is_dir() else []
    if not sample:
        raise SystemExit("no sample JPEGs under data/sample (make demo or python data/make_sample.py first)")
    with tarfile.open(path, "w") as tar:
        for i in range(images):
            tar.add(sample[i % len(sample)], arcname=f"{i:07d}.jpg")
    return path.stat().st_size


def drop_caches() -> bool:
    """Empty the page cache so the next round reads the device; False where that is not allowed."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def per_image(items: list, pool: ThreadPoolExecutor, batch_size: int) -> float:
    start = time.perf_counter()
    for b in range(0, len(items), batch_size):
        for data, error, _ in pool.map(read_item, items[b:b + batch_size]):
            assert data is not None, error
    return time.perf_counter() - start


def spans(items: list, pool: ThreadPoolExecutor, batch_size: int) -> float:
    start = time.perf_counter()
    for b in range(0, len(items), batch_size):
        chunk = items[b:b + batch_size]
        assert len(pool.submit(read_ahead, chunk).result().data) == len(chunk)
    return time.perf_counter() - start


def share_spans(items: list, pool: ThreadPoolExecutor, batch_size: int) -> float:
    """As decode processes read (decode/procs.py): each share of SHARE_ROWS members its own span, shares at once."""
    start = time.perf_counter()
    for b in range(0, len(items), batch_size):
        chunk = items[b:b + batch_size]
        shares = [chunk[i:i + SHARE_ROWS] for i in range(0, len(chunk), SHARE_ROWS)]
        assert sum(len(done.data) for done in pool.map(read_ahead, shares)) == len(chunk)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "tar_read.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:  # on the repository's filesystem, not a tmpfs
        shard = Path(tmp) / "shard.tar"
        size = make_shard(shard, args.images)
        items = list_items([shard])
        times: dict[str, list[float]] = {"per_image": [], "read_ahead": [], "share_spans": []}
        cold = True
        with ThreadPoolExecutor(args.workers) as pool:
            for _ in range(args.rounds):
                for name, fn in (("per_image", per_image), ("read_ahead", spans), ("share_spans", share_spans)):
                    cold = drop_caches() and cold
                    times[name].append(fn(items, pool, args.batch_size))
    result = {"benchmark": "tar_read", "images": args.images, "shard_mb": round(size / 1e6, 1),
              "batch_size": args.batch_size, "workers": args.workers, "page_cache_dropped": cold,
              "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()}}
    print(f"tar_read: {args.images} members, {size / 1e6:.1f} MB, batch {args.batch_size}, {args.workers} workers, "
          f"page cache {'dropped before each round' if cold else 'NOT dropped (not root): reads from memory'}")
    print(f"{'':<12} {'median s':>9} {'MB/s':>8} {'images/s':>9}")
    for name, values in times.items():
        median = statistics.median(values)
        result[name] = {"median_s": round(median, 3), "mb_s": round(size / 1e6 / median, 1),
                        "img_s": round(args.images / median, 1)}
        print(f"{name:<12} {median:>9.3f} {size / 1e6 / median:>8.1f} {args.images / median:>9.1f}")
    result["read_ahead_speedup"] = round(result["per_image"]["median_s"] / result["read_ahead"]["median_s"], 2)
    result["share_spans_speedup"] = round(result["per_image"]["median_s"] / result["share_spans"]["median_s"], 2)
    print(f"read-ahead vs per image: {result['read_ahead_speedup']}x; a span a share of {SHARE_ROWS} (decode "
          f"processes) vs per image: {result['share_spans_speedup']}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, result)


if __name__ == "__main__":
    main()
