"""`batchscore report`: PNG plots from bench JSON and summary.json files (matplotlib, optional extra).

Two figures, each drawn only when the files hold its data:
- throughput_vs_batch.png: images/s against batch size, one line per precision (and per bench file
  when several are given), the out-of-memory end of a sweep marked;
- scaling.png: aggregate images/s against rank count; where a series has a one-rank point and
  more, also the ideal line (n × the one-rank figure) and each point's scaling efficiency; points
  come from score summaries (one per run) and from multi-rank bench files (their one-rank and
  all-rank figures at their best batch size).
Figures whose values span more than a factor of LOG_SPAN get a log images/s axis, so a slow series
(a CPU run beside a GPU bench) stays readable; legends sit beside the axes, never over the data.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from .config import ConfigError
from .writer import atomic_path, publish

Series = dict[str, dict[int, float]]  # label -> {x: images/s}
#: largest ratio of the highest to the lowest images/s that a linear axis still shows readably
LOG_SPAN = 10.0


def load(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    """(bench documents, score summaries) from JSON files; ConfigError names a file that is neither."""
    benches, summaries = [], []
    for path in paths:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read as JSON ({exc})") from None
        if isinstance(doc, dict) and doc.get("kind") == "bench" and "results" in doc:
            benches.append(doc)
        elif isinstance(doc, dict) and "per_rank" in doc and "aggregate_images_per_s" in doc:
            summaries.append(doc)
        else:
            raise ConfigError(f"{path}: neither a bench JSON (batchscore bench) nor a summary.json (batchscore score)")
    return benches, summaries


def _where(doc: dict) -> str:
    return f"{doc['backend']}, {doc.get('device') or doc['per_rank'][0]['device']}"


def batch_series(benches: list[dict]) -> tuple[Series, dict[str, int]]:
    """images/s by batch size per precision (per file too when several); and where each sweep ran out of memory."""
    series: Series = defaultdict(dict)
    oom: dict[str, int] = {}
    for doc in benches:
        suffix = f" ({_where(doc)}, {doc['ranks']} rank{'s' if doc['ranks'] > 1 else ''})" if len(benches) > 1 else ""
        for row in doc["results"]:
            label = row["precision"] + suffix
            if "oom" in row:
                oom[label] = row["batch_size"]
            else:
                series[label][row["batch_size"]] = row["images_per_s"]
    return dict(series), oom


def scaling_series(benches: list[dict], summaries: list[dict]) -> Series:
    """Aggregate images/s by rank count, one series per backend/device/precision/batch size."""
    series: Series = defaultdict(dict)
    for doc in summaries:
        label = f"score: {_where(doc)}, {doc['precision']}, batch {doc['batch_size']}"
        series[label][doc["ranks"]] = doc["aggregate_images_per_s"]
    for doc in (d for d in benches if d["ranks"] > 1):  # a one-rank sweep alone is no scaling data
        for precision in dict.fromkeys(r["precision"] for r in doc["results"]):
            rows = [r for r in doc["results"] if r["precision"] == precision and "images_per_s" in r]
            if not rows:
                continue
            best = max(rows, key=lambda r: r["images_per_s"])
            label = f"bench: {_where(doc)}, {precision}, batch {best['batch_size']}"
            series[label][doc["ranks"]] = best["images_per_s"]
            if best.get("one_rank_images_per_s"):
                series[label].setdefault(1, best["one_rank_images_per_s"])
    return {k: v for k, v in series.items() if v}


def needs_log(series: Series) -> bool:
    """Whether the images/s of `series` span more than LOG_SPAN: a linear axis would flatten the slow ones."""
    values = [v for points in series.values() for v in points.values() if v > 0]
    return bool(values) and max(values) > LOG_SPAN * min(values)


def _finish_axes(ax, series: Series, title: str) -> None:  # noqa: ANN001 - matplotlib Axes
    """Log images/s axis where `needs_log`, else linear from 0; the legend beside the axes, not over the data."""
    values = [v for points in series.values() for v in points.values() if v > 0]
    if needs_log(series):
        ax.set_yscale("log")
        title += " (log scale)"
    else:
        ax.set_ylim(0, max(values, default=1.0) * 1.15)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _save(fig, path: Path) -> None:  # noqa: ANN001 - matplotlib Figure
    tmp = atomic_path(path)
    fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    publish(tmp, path)


def report(paths: list[Path], out: Path) -> str:
    """Draw the plots the files allow into `out`; returns what was drawn, as text for stdout."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("report draws with matplotlib, which is not installed: "
                          "pip install 'batchscore[plots]'") from None
    benches, summaries = load(paths)
    out.mkdir(parents=True, exist_ok=True)
    lines = []

    by_batch, oom = batch_series(benches)
    if by_batch:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, points in by_batch.items():
            xs = sorted(points)
            (line,) = ax.plot(xs, [points[x] for x in xs], marker="o", label=label)
            if label in oom:
                ax.axvline(oom[label], color=line.get_color(), linestyle=":", linewidth=1)
                ax.annotate(f"out of memory at {oom[label]}", (oom[label], 0), xycoords=("data", "axes fraction"),
                            rotation=90, fontsize=8, xytext=(-10, 8), textcoords="offset points",
                            color=line.get_color())
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({x for v in by_batch.values() for x in v} | set(oom.values())))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        where = "" if len(benches) > 1 else f" ({_where(benches[0])}, {benches[0]['ranks']} rank(s), images/s summed)"
        ax.set(xlabel="batch size", ylabel="images/s")
        _finish_axes(ax, by_batch, "Engine throughput, synthetic input" + where)
        _save(fig, out / "throughput_vs_batch.png")
        plt.close(fig)
        lines.append(f"{out / 'throughput_vs_batch.png'}: images/s vs batch size for "
                     + ", ".join(f"{k} ({len(v)} sizes)" for k, v in by_batch.items()))

    by_ranks = scaling_series(benches, summaries)
    if by_ranks:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, points in by_ranks.items():
            xs = sorted(points)
            (line,) = ax.plot(xs, [points[x] for x in xs], marker="o", label=label)
            if xs[0] != 1 or len(xs) < 2:  # no measured one-rank figure to scale, or nothing to compare with it
                lines.append(f"{out / 'scaling.png'}: {label}: "
                             + ", ".join(f"{x} rank(s) {points[x]:.1f} img/s" for x in xs))
                continue
            one = points[1]
            ax.plot([1, max(xs)], [one, one * max(xs)], linestyle="--", color=line.get_color(), alpha=0.6,
                    label=f"ideal: {one:.0f} × ranks")
            for x in xs:
                ax.annotate(f"{points[x] / (one * x):.0%}", (x, points[x]), xytext=(4, -12),
                            textcoords="offset points", fontsize=8)
            lines.append(f"{out / 'scaling.png'}: {label}: "
                         + ", ".join(f"{x} rank(s) {points[x]:.1f} img/s ({points[x] / (one * x):.0%})" for x in xs))
        ax.set_xticks(sorted({x for v in by_ranks.values() for x in v} | {1}))
        ax.set_xlim(0.8, max(x for v in by_ranks.values() for x in v) + 0.2)
        ax.set(xlabel="ranks", ylabel="aggregate images/s")
        ideal = {f"{k} ideal": {max(v): v[1] * max(v)} for k, v in by_ranks.items() if 1 in v and len(v) > 1}
        _finish_axes(ax, {**by_ranks, **ideal}, "Scaling (labels: efficiency vs ideal)" if ideal else "Throughput by ranks")
        _save(fig, out / "scaling.png")
        plt.close(fig)
    if not lines:
        raise ConfigError("nothing to plot: the files hold no measured points")
    return "\n".join(lines)
