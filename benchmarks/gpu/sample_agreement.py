"""The sample job scored by the torch backend on one GPU agrees with ONNX Runtime on the CPU (top-1).

Runs `python -m batchscore score` on jobs/demo.toml (the bundled sample; make it first with
`python data/make_sample.py`) with ONNX Runtime, then with the torch backend per precision and compile
mode, and compares top-1 per key in the scores.h5 files.

    python benchmarks/gpu/sample_agreement.py --precisions fp32,fp16 --compiles eager,compiled --out $OUT
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py

from common import arg_parser, write_results

ROOT = Path(__file__).resolve().parents[2]


def score(backend: str, precision: str, output: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "batchscore", "score", "--job", str(ROOT / "jobs/demo.toml"), "--backend", backend,
           "--precision", precision, "--output", str(output), "--overwrite", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", flush=True)
    proc.check_returncode()
    with h5py.File(output / "scores.h5", "r") as f:
        keys = [k.decode() if isinstance(k, bytes) else k for k in f["key"][:]]
        top1 = dict(zip(keys, f["topk_index"][:, 0]))
        ok = dict(zip(keys, f["status"][:] == 0))
    summary = json.loads((output / "summary.json").read_text())
    return {"top1": top1, "ok": ok, "device": summary["per_rank"][0]["device"], "backend": summary["backend"]}


def main() -> None:
    ap = arg_parser(__doc__, "/tmp/batchscore-agreement")
    ap.add_argument("--precisions", default="fp32")
    ap.add_argument("--compiles", default="eager", help="torch compile modes: eager, cudagraph, compiled")
    args = ap.parse_args()
    reference = score("onnxruntime", "fp32", args.work / "ort", [])
    results: dict = {"reference": f"onnxruntime fp32 on {reference['device']}"}
    for precision in args.precisions.split(","):
        for mode in args.compiles.split(","):
            run = score("torch", precision, args.work / f"torch-{precision}-{mode}", ["--compile", mode])
            keys = [k for k in reference["top1"] if reference["ok"][k] and run["ok"].get(k)]
            same = sum(int(reference["top1"][k] == run["top1"][k]) for k in keys)
            results[f"torch_{precision}_{mode}"] = {"device": run["device"], "images": len(keys), "same_top1": same,
                                                    "agreement_pct": round(100 * same / max(1, len(keys)), 3)}
            write_results(args.out, "agreement", results, show=False)
    write_results(args.out, "agreement", results)


if __name__ == "__main__":
    main()
