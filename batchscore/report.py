"""Report: per-rank statistics gathered at rank 0 → summary.json and a table on stdout.

Stages per rank: read and decode are summed over the rank's decode workers, which run beside
the main loop; gpu is the GPU decoder thread's own time (decode on the GPU, resize, assembly);
wait is how long the main loop waited for decoded input; h2d, infer, d2h and write are the main
loop's own seconds. The bound stage is the busiest one, measured as the share of the rank's time
each stage kept its threads busy (read and decode divided by the worker count, gpu by the GPU
decoder threads): the one to speed up first. A GPU decoder and the engine share one GPU, so "gpu"
and "infer" close together mean the GPU itself is the bound.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline import Batch

STAGES = ("read", "decode", "gpu", "wait", "h2d", "infer", "d2h", "write")


@dataclass
class RankStats:
    """What one rank did in this run; small, sent to rank 0 with a lowercase gather."""

    rank: int
    host: str = field(default_factory=socket.gethostname)
    local_rank: int = 0
    device: str = "cpu"
    threads: int = 0
    workers: int = 0
    worker_kind: str = "thread"  # how its CPU decode workers ran: "process" (decode/procs.py) or "thread"
    gpu_threads: int = 0  # GPU decoder threads (lanes), 0 when decoding on the CPU
    gpu_shared: bool = False  # another rank of its node drives the same GPU (share_gpus)
    images: int = 0
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    first_batch_seconds: float = 0.0  # from the start to the first batch scored: the pipeline filling up
    first_batch_images: int = 0
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    decoders: dict[str, int] = field(default_factory=dict)  # images per decoder (pipeline.Batch.decoders)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_images_per_s(self) -> float:
        """The rate after the first batch: what a larger archive approaches, with the fill-up left out (a short
        run's end-to-end rate mixes the two; 0 when there was one batch or none)."""
        rest, images = self.seconds - self.first_batch_seconds, self.images - self.first_batch_images
        return images / rest if rest > 0 and images > 0 else 0.0

    @property
    def busy(self) -> dict[str, float]:
        """Per stage, the seconds its threads were busy divided by how many ran it at once (not wait)."""
        at_once = {"read": max(1, self.workers), "decode": max(1, self.workers), "gpu": max(1, self.gpu_threads)}
        return {s: self.stages[s] / at_once.get(s, 1) for s in STAGES if s != "wait"}

    @property
    def bound(self) -> str:
        """The stage that limited this rank (see the module docstring); "" before any work."""
        if not self.images:
            return ""
        busy = self.busy
        return max(busy, key=busy.__getitem__)

    def add(self, batch: Batch) -> None:
        """Count one batch from the decode pipeline: images, failures, read/decode/wait seconds."""
        self.images += len(batch.keys)
        self.failed += int((~batch.ok).sum())
        self.stages["read"] += batch.read_seconds
        self.stages["decode"] += batch.decode_seconds
        self.stages["gpu"] += batch.gpu_seconds
        self.stages["wait"] += batch.wait_seconds
        for name, count in batch.decoders.items():
            self.decoders[name] = self.decoders.get(name, 0) + count

    def as_dict(self) -> dict:
        d = asdict(self)
        d["images_per_s"] = round(self.images_per_s, 2)
        d["seconds"] = round(self.seconds, 4)
        d["first_batch_seconds"] = round(self.first_batch_seconds, 4)
        d["steady_images_per_s"] = round(self.steady_images_per_s, 2)
        d["stages"] = {k: round(v, 4) for k, v in self.stages.items()}
        d["bound"] = self.bound
        d["busy_fraction"] = {k: round(v / self.seconds, 3) if self.seconds > 0 else 0.0 for k, v in self.busy.items()}
        return d


def summarize(stats: list[RankStats], *, wall_seconds: float, total_keys: int, failed_total: int,
              resumed: int, info: dict) -> dict:
    """The run's summary: totals, per-rank rows, aggregate throughput, plus the run's settings."""
    scoring = max((s.seconds for s in stats), default=0.0)
    images = sum(s.images for s in stats)
    per_rank = [s.images_per_s for s in stats if s.images]
    decoders: dict[str, int] = {}
    for s in stats:
        for name, count in s.decoders.items():
            decoders[name] = decoders.get(name, 0) + count
    return {
        **info,
        "images": {"total": total_keys, "ok": total_keys - failed_total, "failed": failed_total,
                   "scored_this_run": images, "resumed_from_earlier_runs": resumed},
        "ranks": len(stats),
        "decoders": decoders,
        "per_rank": [s.as_dict() for s in stats],
        "aggregate_images_per_s": round(images / scoring, 2) if scoring > 0 else 0.0,
        "mean_rank_images_per_s": round(sum(per_rank) / len(per_rank), 2) if per_rank else 0.0,
        "steady_images_per_s": round(sum(s.steady_images_per_s for s in stats), 2),
        "first_batch_seconds": round(max((s.first_batch_seconds for s in stats), default=0.0), 4),
        "scoring_seconds": round(scoring, 4),
        "wall_seconds": round(wall_seconds, 4),
    }


#: stages that only a GPU run spends time in: the table leaves them out where every rank's is zero
GPU_STAGES = ("gpu", "h2d", "d2h")


def decode_line(summary: dict) -> str:
    """Where images were decoded, in plain words: "decode: CPU, 2 workers" (the reason stays in summary.json)."""
    decoders = ", ".join(f"{k} {v}" for k, v in summary.get("decoders", {}).items() if v) or "none"
    if summary.get("decode", "cpu") != "cpu":
        return f"decode: {summary['decode']} ({summary.get('decode_reason', '')}); images by decoder: {decoders}"
    ranks = summary["per_rank"]
    counts = sorted({r["workers"] for r in ranks})
    workers = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    processes = all(r.get("worker_kind") == "process" for r in ranks)  # decode/procs.py
    noun = ("worker process" if processes else "worker") + ("" if workers == "1" else ("es" if processes else "s"))
    return f"decode: CPU, {workers} {noun}{' per rank' if len(ranks) > 1 else ''}"


def rate_line(summary: dict) -> str:
    """The aggregate rate; the rate after the first batch only where every rank scored more than one batch."""
    if not summary["images"]["scored_this_run"]:
        return f"nothing to score ({summary['wall_seconds']:.2f} s wall)"
    line = (f"aggregate: {summary['aggregate_images_per_s']:.1f} img/s over {summary['scoring_seconds']:.2f} s of "
            f"scoring ({summary['wall_seconds']:.2f} s wall incl. start-up and merge); first batch scored after "
            f"{summary['first_batch_seconds']:.2f} s")
    if all(r["steady_images_per_s"] > 0 for r in summary["per_rank"] if r["images"]):
        line += f", {summary['steady_images_per_s']:.1f} img/s after it"
    return line


def incremental_line(summary: dict) -> list[str]:
    """What an --incremental run found, said plainly when it found nothing to score."""
    inc = summary.get("incremental")
    if not inc:
        return []
    if inc.get("new", 0) or inc.get("changed", 0):
        return [f"incremental: {inc.get('new', 0)} new, {inc.get('changed', 0)} changed, {inc.get('removed', 0)} "
                f"removed since the last run; {inc['index_keys']} images in the index"]
    return [f"incremental: nothing new or changed since the last run ({inc.get('removed', 0)} removed); "
            f"{inc['index_keys']} images in the index"]


def format_table(summary: dict) -> str:
    """The summary as a plain-text table for rank 0's stdout; GPU-only columns are left out of a CPU run."""
    img = summary["images"]
    ranks = summary["per_rank"]
    stages = [s for s in STAGES if s not in GPU_STAGES or any(r["stages"][s] for r in ranks)]
    lines = [
        f"batchscore {summary['version']}  backend={summary['backend']}  precision={summary['precision']}  "
        f"batch={summary['batch_size']}  ranks={summary['ranks']}",
        f"images: {img['total']} total, {img['ok']} ok, {img['failed']} failed"
        + (f" ({img['resumed_from_earlier_runs']} from an earlier run)" if img["resumed_from_earlier_runs"] else ""),
        *incremental_line(summary),
        decode_line(summary),
        "",
        f"{'rank':>4} {'host':<16} {'device':<14} {'images':>7} {'seconds':>8} {'img/s':>8}  "
        + " ".join(f"{s:>7}" for s in stages) + "  bound",
    ]
    for r in ranks:
        lines.append(f"{r['rank']:>4} {r['host'][:16]:<16} {r['device'][:14]:<14} {r['images']:>7} "
                     f"{r['seconds']:>8.2f} {r['images_per_s']:>8.1f}  "
                     + " ".join(f"{r['stages'][s]:>7.2f}" for s in stages) + f"  {r['bound']}")
    gpu = ", gpu = its GPU decoder thread" if "gpu" in stages else ""
    lines += [
        f"(stage columns in seconds: read and decode summed over a rank's decode workers{gpu}, wait = its loop "
        "waiting for input; bound = the busiest stage, read and decode per worker: the one to speed up first)",
        "",
        rate_line(summary),
        f"output: {summary['output']}",
    ]
    return "\n".join(lines)
