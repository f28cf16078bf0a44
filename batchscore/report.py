"""Report: per-rank statistics gathered at rank 0 → summary.json and a table on stdout."""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field

STAGES = ("read", "decode", "wait", "infer", "write")


@dataclass
class RankStats:
    """What one rank did in this run; small, sent to rank 0 with a lowercase gather."""

    rank: int
    host: str = field(default_factory=socket.gethostname)
    local_rank: int = 0
    device: str = "cpu"
    threads: int = 0
    workers: int = 0
    images: int = 0
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["images_per_s"] = round(self.images_per_s, 2)
        d["seconds"] = round(self.seconds, 4)
        d["stages"] = {k: round(v, 4) for k, v in self.stages.items()}
        return d


def summarize(stats: list[RankStats], *, wall_seconds: float, total_keys: int, failed_total: int,
              resumed: int, info: dict) -> dict:
    """The run's summary: totals, per-rank rows, aggregate throughput, plus the run's settings."""
    scoring = max((s.seconds for s in stats), default=0.0)
    images = sum(s.images for s in stats)
    per_rank = [s.images_per_s for s in stats if s.images]
    return {
        **info,
        "images": {"total": total_keys, "ok": total_keys - failed_total, "failed": failed_total,
                   "scored_this_run": images, "resumed_from_earlier_runs": resumed},
        "ranks": len(stats),
        "per_rank": [s.as_dict() for s in stats],
        "aggregate_images_per_s": round(images / scoring, 2) if scoring > 0 else 0.0,
        "mean_rank_images_per_s": round(sum(per_rank) / len(per_rank), 2) if per_rank else 0.0,
        "scoring_seconds": round(scoring, 4),
        "wall_seconds": round(wall_seconds, 4),
    }


def format_table(summary: dict) -> str:
    """The summary as a plain-text table for rank 0's stdout."""
    img = summary["images"]
    lines = [
        f"batchscore {summary['version']}  backend={summary['backend']}  precision={summary['precision']}  "
        f"batch={summary['batch_size']}  ranks={summary['ranks']}",
        f"images: {img['total']} total, {img['ok']} ok, {img['failed']} failed"
        + (f" ({img['resumed_from_earlier_runs']} from an earlier run)" if img["resumed_from_earlier_runs"] else ""),
        "",
        f"{'rank':>4} {'host':<16} {'device':<14} {'images':>7} {'seconds':>8} {'img/s':>8}  "
        + " ".join(f"{s:>7}" for s in STAGES),
    ]
    for r in summary["per_rank"]:
        lines.append(f"{r['rank']:>4} {r['host'][:16]:<16} {r['device'][:14]:<14} {r['images']:>7} "
                     f"{r['seconds']:>8.2f} {r['images_per_s']:>8.1f}  "
                     + " ".join(f"{r['stages'][s]:>7.2f}" for s in STAGES))
    lines += [
        "",
        f"aggregate: {summary['aggregate_images_per_s']:.1f} img/s over {summary['scoring_seconds']:.2f} s of scoring "
        f"({summary['wall_seconds']:.2f} s wall incl. start-up and merge)",
        f"output: {summary['output']}",
    ]
    return "\n".join(lines)
