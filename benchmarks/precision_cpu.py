"""FP32, FP16 and INT8 of the sample model with ONNX Runtime on this CPU, in one run.

The variants come from `prepare_model` exactly as a job gets them (seeded calibration on the job's
archive, cached). Timing is engine-only: one batch of real preprocessed images from the archive, run
repeatedly; the precisions take turns round by round, so load from other processes hits them alike:
images/s is the median round, the ratio to FP32 the median of the per-round ratios. Also reports
whether the CPU has VNNI (int8 dot products) and which kernels ONNX Runtime chose for each variant
(QLinearConv = the INT8 convolutions really run in INT8).

    python benchmarks/precision_cpu.py                  # jobs/demo.toml; table on stdout, JSON in results/
    python benchmarks/precision_cpu.py --threads 1 --batch-size 8 --json results/precision_cpu_1t.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from batchscore.config import load_job
from batchscore.engines import EngineOptions, create_engine
from batchscore.decode.cpu import CpuDecoder, decode_executor
from batchscore.pipeline import batches
from batchscore.precision import prepare_model
from batchscore.sources import list_items
from batchscore.writer import write_json

ROOT = Path(__file__).resolve().parents[1]

PRECISIONS = ("fp32", "fp16", "int8")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_info() -> dict:
    """Model name and the SIMD flags that matter for int8/fp16 from /proc/cpuinfo (Linux)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    wanted = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
              "avx512_fp16", "amx_int8")
    return {"model": fields.get("model name", platform.processor()), "logical_cpus": os.cpu_count(),
            "flags": [f for f in wanted if f in flags], "vnni": any(f in flags for f in VNNI_FLAGS)}


def optimized_ops(path: Path, threads: int) -> dict[str, int]:
    """Op types of the graph ONNX Runtime actually runs after its optimisations (QDQ fusion etc.)."""
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        opts.log_severity_level = 3  # its "hardware-specific optimisations" warning is expected here
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return dict(Counter(n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--job", type=Path, default=ROOT / "jobs" / "demo.toml", help="job whose model and archive to use")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--rounds", type=int, default=7, help="rounds; every precision runs once per round")
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per precision per round")
    ap.add_argument("--json", type=Path, default=ROOT / "results" / "precision_cpu.json")
    args = ap.parse_args(argv)

    job = load_job(args.job)
    models = {p: prepare_model(job.with_overrides(precision=p)) for p in PRECISIONS}
    items = list_items(job.input, job.hdf5_dataset)[:args.batch_size]
    with decode_executor(0) as pool:
        batch = next(iter(batches(items, CpuDecoder(job.preprocess, pool), args.batch_size))).tensors
    engines = {p: create_engine("onnxruntime", m, EngineOptions(len(batch), args.threads)).activate()
               for p, m in models.items()}
    for engine in engines.values():  # warm-up: first runs allocate and pick kernels
        for _ in range(3):
            engine.infer(batch)
    rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    load_before = os.getloadavg()[0]  # other processes on the machine: the interleaving evens them out
    for _ in range(args.rounds):
        for p, engine in engines.items():
            n, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < args.seconds:
                engine.infer(batch)
                n += len(batch)
            rates[p].append(n / elapsed)
    reference = engines["fp32"].infer(batch)
    cpu = cpu_info()
    rows = {}
    for p in PRECISIONS:
        logits = next(iter(engines[p].infer(batch).values()))
        ref = next(iter(reference.values()))
        rows[p] = {
            "images_per_s": round(statistics.median(rates[p]), 1),
            "images_per_s_rounds": [round(r, 1) for r in rates[p]],
            "ms_per_batch": round(1e3 * len(batch) / statistics.median(rates[p]), 3),
            # per round, against the fp32 run right before it: slow drifts in machine load cancel out
            "speedup_vs_fp32": round(statistics.median(x / y for x, y in zip(rates[p], rates["fp32"])), 3),
            "top1_agreement_on_batch": float(np.mean(logits.argmax(1) == ref.argmax(1))),
            "model": str(models[p]), "model_bytes": models[p].stat().st_size,
            "optimized_ops": optimized_ops(models[p], args.threads),
        }
        engines[p].deactivate()
    result = {"cpu": cpu, "onnxruntime": ort.__version__, "batch_size": len(batch), "threads": args.threads,
              "rounds": args.rounds, "seconds_per_round": args.seconds, "job": str(args.job),
              "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}, "precisions": rows}

    print(f"CPU: {cpu['model']} ({cpu['logical_cpus']} logical CPUs), VNNI: {'yes' if cpu['vnni'] else 'no'} "
          f"[{' '.join(cpu['flags'])}]")
    print(f"ONNX Runtime {ort.__version__}, batch {len(batch)}, {args.threads} thread(s), median of "
          f"{args.rounds} rounds x {args.seconds:g} s; 1-min load average {load_before:.2f} before, "
          f"{result['load_average_1min']['after']:.2f} after")
    print(f"{'precision':<9} {'img/s':>9} {'ms/batch':>9} {'vs fp32':>8} {'MB':>6}  kernels")
    for p, r in rows.items():
        kernels = ", ".join(f"{k} {v}" for k, v in sorted(r["optimized_ops"].items()) if k in
                            ("Conv", "FusedConv", "QLinearConv", "QGemm", "Gemm", "Cast", "QuantizeLinear",
                             "DequantizeLinear"))
        print(f"{p:<9} {r['images_per_s']:>9.1f} {r['ms_per_batch']:>9.2f} {r['speedup_vs_fp32']:>7.2f}x "
              f"{r['model_bytes'] / 1e6:>6.2f}  {kernels}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, result)
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
