"""Start-up: a first (empty engine cache) and a second (same cache) `batchscore score` per model, each a fresh
process, and the seconds until the engine is ready.

For each model the same small job is scored twice into fresh output folders, with one fresh engine cache shared
by both runs: the first run converts (or builds) and fills the cache, the second reads it, as a second job on the
same node does. Reported per run: the engine's activation ("ready in", from the rank's log, with its steps),
`engine_ready` from summary.json's timeline (from the start of the run, planning included), and the command's
wall-clock and CPU time (the CPU time is the steadier figure on a busy machine). Models: the sample model and a ResNet-50 with seeded weights (benchmarks/gpu/common.py).

    python benchmarks/startup.py                                # backend torch (on the GPU where there is one)
    python benchmarks/startup.py --backend torch --rounds 3 --images 16
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
sys.path.insert(0, str(ROOT / "data"))

from common import machine, resnet50_onnx  # noqa: E402 - benchmarks/gpu/common.py
from make_sample import generate  # noqa: E402 - data/make_sample.py

READY = re.compile(r"engine on (?P<device>.+?) ready in (?P<seconds>[\d.]+) s(?: \((?P<steps>[^)]*)\))?"
                   r"(?:; engine cache (?P<cache>\w+))?")


def score_once(model: Path, images: Path, cache: Path, work: Path, backend: str, batch_size: int) -> dict:
    """One `batchscore score` in a fresh process: its engine's start, the timeline and the wall-clock time."""
    out = Path(tempfile.mkdtemp(prefix="out-", dir=work))
    cmd = [sys.executable, "-m", "batchscore", "score", "--input", str(images), "--model", str(model),
           "--output", str(out), "--backend", backend, "--batch-size", str(batch_size)]
    env = {**os.environ, "BATCHSCORE_CACHE": str(cache)}
    start, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-2000:]}")
    found = READY.search(proc.stderr + proc.stdout)
    if found is None:
        sys.exit(f"no 'engine ... ready in' line in the run's log: {proc.stderr.strip()[-2000:]}")
    timeline = json.loads((out / "summary.json").read_text())["timeline_seconds"]
    steps = dict((name, float(s)) for name, s in re.findall(r"(\w+) ([\d.]+) s", found["steps"] or ""))
    shutil.rmtree(out)
    return {"ready_s": float(found["seconds"]), "engine_ready_timeline_s": timeline.get("engine_ready"),
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cache": found["cache"] or "none", "device": found["device"], "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--images", type=int, default=8, help="images in the scored job (few: start-up is measured)")
    ap.add_argument("--batch-size", type=int, default=0, help="0: the job's default for the device")
    ap.add_argument("--rounds", type=int, default=1, help="first/second pairs per model, each with a fresh cache")
    ap.add_argument("--models", nargs="+", default=["sample", "resnet50"],
                    help="'sample' (data/model.onnx), 'resnet50' (seeded) or paths to ONNX files")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "batchscore-startup")
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "startup.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    images = args.work / "images"
    if not images.is_dir():
        generate(images, count=args.images, seed=0)
    models = {name: ROOT / "data" / "model.onnx" if name == "sample" else
              resnet50_onnx(args.work / "resnet50.onnx") if name == "resnet50" else Path(name) for name in args.models}
    results: dict = {"machine": machine(), "backend": args.backend, "command": " ".join(sys.argv), "models": {}}
    print(f"{'model':<12} {'round':>5} {'start':<7} {'cache':<7} {'ready s':>8} {'timeline s':>10} {'wall s':>7} {'cpu s':>6}  steps")
    for name, model in models.items():
        runs: dict[str, list[dict]] = {"first": [], "second": []}
        for r in range(args.rounds):
            cache = Path(tempfile.mkdtemp(prefix="cache-", dir=args.work))
            for start in ("first", "second"):
                row = score_once(model, images, cache, args.work, args.backend, args.batch_size)
                runs[start].append(row)
                steps = ", ".join(f"{k} {v:.2f}" for k, v in row["steps"].items())
                print(f"{name:<12} {r:>5} {start:<7} {row['cache']:<7} {row['ready_s']:>8.2f} "
                      f"{row['engine_ready_timeline_s']:>10.2f} {row['wall_s']:>7.2f} {row['cpu_s']:>6.2f}  {steps}", flush=True)
            shutil.rmtree(cache)
        results["models"][name] = {
            "path": str(model), "runs": runs,
            "median_ready_s": {k: statistics.median(r["ready_s"] for r in v) for k, v in runs.items()},
            "median_engine_ready_timeline_s": {k: statistics.median(r["engine_ready_timeline_s"] for r in v)
                                               for k, v in runs.items()}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
