"""How the job's own overhead grows with the archive: 1, 3 and 10 million keys (issue 35).

--archive list (default) builds a list file of paths that do not exist, so every row is an error row and
no image is decoded: what is measured is listing, planning, the split of the plan, the loop, the part
files and the merge. --archive tar builds tar shards of tiny real JPEGs (16×16) scored by a tiny model
(average pool and one linear layer, 16-pixel preprocessing): the real read and decode path, cheaply.
Each size is scored with `mpiexec -n RANKS`; printed per size: time to first batch, scoring time, merge
time, wall time, peak resident memory of rank 0 and of the other ranks, and the size of scores.h5. JSON
beside the table (--json).

    .venv/bin/python benchmarks/scale.py --sizes 1 3 10 --ranks 4 --json results/scale.json
    .venv/bin/python benchmarks/scale.py --archive tar --sizes 0.1 --json results/scale-tar.json

Each rank runs under this script (`--as-rank`), which records its peak resident memory (getrusage,
the rank process itself) in the work folder when the rank ends.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
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


MEMBERS_PER_SHARD = 10_000


def tiny_jpegs(count: int = 16) -> list[bytes]:
    """Real 16×16 JPEGs of a few colours."""
    from PIL import Image

    out = []
    for i in range(count):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (i * 16 % 256, 255 - i * 16 % 256, i * 40 % 256)).save(buf, "JPEG", quality=80)
        out.append(buf.getvalue())
    return out


def build_tars(folder: Path, count: int) -> None:
    """`count` tiny JPEGs in tar shards of MEMBERS_PER_SHARD members."""
    stamp = folder / "count"
    if stamp.exists() and stamp.read_text() == str(count):
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    jpegs = tiny_jpegs()
    for shard, start in enumerate(range(0, count, MEMBERS_PER_SHARD)):
        with tarfile.open(folder / f"shard-{shard:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(start, min(count, start + MEMBERS_PER_SHARD)):
                data = jpegs[i % len(jpegs)]
                info = tarfile.TarInfo(f"{i:09d}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    stamp.write_text(str(count))


def tiny_model(path: Path) -> Path:
    """An ONNX model: global average pool over a 3×16×16 input, then 3 → 10 linear (dynamic batch)."""
    if path.exists():
        return path
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "w", "b"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(rng.normal(size=(3, 10)).astype(np.float32), "w"),
         numpy_helper.from_array(np.zeros(10, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def as_rank(work: Path, argv: list[str]) -> int:
    """Run batchscore in this process (one MPI rank), then record its peak RSS."""
    from batchscore.cli import main

    try:
        return main(argv)
    finally:
        rank = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0"))
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        (work / f"rss-{rank}.json").write_text(json.dumps({"rank": int(rank), "peak_rss_mb": peak_kb / 1024}))


def run_size(millions: float, ranks: int, batch_size: int, work: Path, archive: str) -> dict:
    count = int(millions * 1_000_000)
    if archive == "list":
        source, model, extra = work / f"list-{count}.txt", MODEL, []
        build_list(source, count)
    else:
        source, model = work / f"tars-{count}", tiny_model(work / "tiny.onnx")
        build_tars(source, count)
        job = work / "tiny.toml"
        job.write_text(f'input = ["{source}"]\nmodel = "{model}"\noutput = "{work}"\n\n[preprocess]\nresize = 16\ncrop = 16\n')
        extra = ["--job", str(job)]
    out = work / f"out-{archive}-{count}"
    shutil.rmtree(out, ignore_errors=True)
    for old in work.glob("rss-*.json"):
        old.unlink()
    mpiexec = Path(sys.executable).with_name("mpiexec")
    cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "--oversubscribe", "-n", str(ranks), sys.executable,
           str(Path(__file__).resolve()), "--as-rank", str(work), "--", "score", *extra, "--input", str(source),
           "--model", str(model), "--output", str(out), "--backend", "onnxruntime",
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
    row = {"archive": archive, "keys": count, "ranks": ranks, "batch_size": batch_size,
           "first_batch_s": round(startup + line["first_batch"], 1),
           "planned_s": round(startup + line["planned"], 1),
           "scoring_s": round(line["merge_start"] - line["planned"], 1),
           "merge_s": round(line["merged"] - line["merge_start"], 1),
           "wall_s": round(wall, 1),
           "rank0_peak_rss_mb": round(rss.get(0, float("nan"))),
           "other_ranks_peak_rss_mb": round(max((v for k, v in rss.items() if k != 0), default=float("nan"))),
           "output_mb": round((out / "scores.h5").stat().st_size / 2**20, 1),
           "rows": summary["images"]["total"], "error_rows": summary["images"]["failed"]}
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
    p.add_argument("--archive", choices=("list", "tar"), default="list",
                   help="list: a list file of missing paths (overhead only); tar: shards of tiny real JPEGs")
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
        rows.append(run_size(millions, args.ranks, args.batch_size, args.work, args.archive))
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
