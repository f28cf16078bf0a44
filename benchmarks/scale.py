"""How the job's own overhead grows with the archive: 1, 3 and 10 million keys (issue 35).

Builds a list file of paths that do not exist (so every row is an error row and no image is decoded:
what is measured is listing, planning, the split of the plan, the loop, the part files and the merge),
scores it with `mpiexec -n RANKS`, and prints per size: time to first batch, scoring time, merge time,
wall time, peak resident memory of rank 0 and of the other ranks, and the size of scores.h5. JSON
beside the table (--json).

    .venv/bin/python benchmarks/scale.py --sizes 1 3 10 --ranks 4 --json results/scale.json

Each rank runs under this script (`--as-rank`), which records its peak resident memory (getrusage,
the rank process itself) in the work folder when the rank ends.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "data" / "model.onnx"
LINES_AT_ONCE = 1 << 20


def mpi_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", PRTE_ALLOW_RUN_AS_ROOT="1",
               PRTE_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    return env


def build_list(path: Path, count: int) -> None:
    """`count` paths of absent JPEGs, 1,000 to a folder, written a million lines at a time."""
    if path.exists() and path.stat().st_size > 0 and path.with_suffix(".count").read_text() == str(count):
        return
    with open(path, "w") as f:
        for start in range(0, count, LINES_AT_ONCE):
            f.write("".join(f"d{i // 1000:06d}/{i:09d}.jpg\n" for i in range(start, min(count, start + LINES_AT_ONCE))))
    path.with_suffix(".count").write_text(str(count))


def as_rank(work: Path, argv: list[str]) -> int:
    """Run batchscore in this process (one MPI rank), then record its peak RSS."""
    from batchscore.cli import main

    try:
        return main(argv)
    finally:
        rank = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0"))
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        (work / f"rss-{rank}.json").write_text(json.dumps({"rank": int(rank), "peak_rss_mb": peak_kb / 1024}))


def run_size(millions: float, ranks: int, batch_size: int, work: Path) -> dict:
    count = int(millions * 1_000_000)
    listing = work / f"list-{count}.txt"
    build_list(listing, count)
    out = work / f"out-{count}"
    shutil.rmtree(out, ignore_errors=True)
    for old in work.glob("rss-*.json"):
        old.unlink()
    mpiexec = Path(sys.executable).with_name("mpiexec")
    cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "--oversubscribe", "-n", str(ranks), sys.executable,
           str(Path(__file__).resolve()), "--as-rank", str(work), "--", "score", "--input", str(listing),
           "--model", str(MODEL), "--output", str(out), "--backend", "onnxruntime",
           "--batch-size", str(batch_size), "--threads", "1", "--workers", "1"]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(), cwd=ROOT)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"run of {count} keys failed ({res.returncode}):\n{res.stderr[-4000:]}")
    summary = json.loads((out / "summary.json").read_text())
    line = summary["timeline_seconds"]
    startup = wall - summary["wall_seconds"]  # interpreter, imports and MPI start before the run's clock
    rss = {r["rank"]: r["peak_rss_mb"] for r in (json.loads(p.read_text()) for p in work.glob("rss-*.json"))}
    row = {"keys": count, "ranks": ranks, "batch_size": batch_size,
           "first_batch_s": round(startup + line["first_batch"], 1),
           "planned_s": round(startup + line["planned"], 1),
           "scoring_s": round(line["merge_start"] - line["planned"], 1),
           "merge_s": round(line["merged"] - line["merge_start"], 1),
           "wall_s": round(wall, 1),
           "rank0_peak_rss_mb": round(rss.get(0, float("nan"))),
           "other_ranks_peak_rss_mb": round(max((v for k, v in rss.items() if k != 0), default=float("nan"))),
           "output_mb": round((out / "scores.h5").stat().st_size / 2**20, 1),
           "rows": summary["images"]["total"]}
    shutil.rmtree(out, ignore_errors=True)
    return row


COLUMNS = (("keys", "keys"), ("first_batch_s", "first batch s"), ("scoring_s", "scoring s"),
           ("merge_s", "merge s"), ("wall_s", "wall s"), ("rank0_peak_rss_mb", "rank 0 RSS MB"),
           ("other_ranks_peak_rss_mb", "other ranks RSS MB"), ("output_mb", "scores.h5 MB"))


def table(rows: list[dict]) -> str:
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---:" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(f"{row[name]:,}" if isinstance(row[name], int) else str(row[name])
                              for name, _ in COLUMNS) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=float, nargs="+", default=[1, 3, 10], help="archive sizes in millions of keys")
    p.add_argument("--ranks", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--work", type=Path, default=Path("/tmp/batchscore-scale"), help="list files and outputs")
    p.add_argument("--json", type=Path, default=ROOT / "results" / "scale.json")
    p.add_argument("--as-rank", type=Path, default=None, help=argparse.SUPPRESS)
    args, rest = p.parse_known_args()
    if args.as_rank:
        raise SystemExit(as_rank(args.as_rank, rest[1:] if rest[:1] == ["--"] else rest))
    args.work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()  # the machine is shared: say how busy it was
    rows = []
    for millions in args.sizes:
        rows.append(run_size(millions, args.ranks, args.batch_size, args.work))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if len(rows) > 1:
        for row in rows:
            row["wall_vs_first"] = round(row["wall_s"] / rows[0]["wall_s"], 2)
    print(table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"command": " ".join(sys.argv), "cpus": os.cpu_count(),
                                     "load_average_at_start": load, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
