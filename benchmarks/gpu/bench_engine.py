"""Engine-only ResNet-50 on one GPU: plain PyTorch eager next to the torch backend in the same run.

Measures images/s at one batch size for plain eager (torchvision model, input already on the GPU),
then the torch backend fed from host memory (pinned double buffering, as when scoring) in eager,
CUDA-graph and compiled (an AOTInductor package, cached) modes, plus the compiled engine's cold start
(build) and warm starts (cache hit) to the first batch, each in a fresh process with empty Inductor and
Triton caches of its own, as on another node: a warm start has only the cached package. The compiled
mode's images/s come from a warm-start process, as a rank runs it: the package is loaded, never built,
where it scores.

    python benchmarks/gpu/bench_engine.py --out $OUT      # prints a table, writes engine.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from batchscore.engines import EngineOptions, create_engine
from batchscore.engines.torch_loaders import exit_reason
from common import arg_parser, machine, resnet50_onnx, write_results
from first_batch import host_batches, throughput

HERE = Path(__file__).resolve().parent


def plain_eager(batch_size: int, iters: int, dtype: torch.dtype) -> float:
    """torchvision ResNet-50 in eval, dtype weights, channels-last, input resident on the GPU."""
    import torchvision

    torch.backends.cudnn.benchmark = True
    model = torchvision.models.resnet50(weights=None).eval().cuda().to(dtype).to(memory_format=torch.channels_last)
    x = torch.randn(batch_size, 3, 224, 224, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            model(x)
        end.record()
        end.synchronize()
    del model, x
    torch.cuda.empty_cache()
    return batch_size * iters / (start.elapsed_time(end) / 1e3)


def backend(model: Path, mode: str, args: argparse.Namespace) -> dict:
    """The torch backend in this process, fed from host batches: wall-clock and GPU-only images/s."""
    engine = create_engine("torch", model, EngineOptions(args.batch_size, device=0, precision=args.precision,
                                                         compile=mode, cache_dir=args.work / "cache"))
    t0 = time.perf_counter()
    engine.activate()
    result = {**throughput(engine, host_batches(args.batch_size), args.batches),
              "activate_s": round(time.perf_counter() - t0, 2), "cache": engine.cache_status}
    engine.deactivate()
    torch.cuda.empty_cache()
    return result


def start_to_first_batch(model: Path, args: argparse.Namespace, name: str, batches: int = 0) -> dict:
    """A fresh process from launch to the first batch's outputs on the host (compiled mode), then, with
    `batches`, its images/s over that many batches.

    It gets empty Inductor/Triton caches of its own (`local-caches-{name}`) and the engine cache folder
    `cache` under the work folder.
    """
    local = args.work / f"local-caches-{name}"
    shutil.rmtree(local, ignore_errors=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TORCHINDUCTOR_CACHE_DIR": str(local / "inductor"),
           "TRITON_CACHE_DIR": str(local / "triton")}
    t0 = time.time()
    try:
        proc = subprocess.run([sys.executable, str(HERE / "first_batch.py"), "--model", str(model), "--cache-dir",
                               str(args.work / "cache"), "--batch-size", str(args.batch_size), "--precision",
                               args.precision, "--batches", str(batches)], capture_output=True, text=True,
                              timeout=args.compile_timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"no first batch within {args.compile_timeout:.0f} s (still compiling; stopped)"}
    if proc.returncode:  # the whole stderr kept beside the results: a crash's native frames come first
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"first_batch_{name}.stderr").write_text(proc.stderr)
        print(proc.stderr[-4000:], file=sys.stderr)
        lines = [line for line in proc.stderr.splitlines() if "Error" in line or "error" in line]
        return {"error": f"{exit_reason(proc.returncode)}: "
                         f"{lines[-1][:300] if lines else 'see first_batch_' + name + '.stderr'}"}
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"seconds": round(info["first_batch_at"] - t0, 2), "cache": info["cache"],
            "torch_import_seconds": round(info["torch_at"] - t0, 2),
            "imports_seconds": round(info["imported_at"] - t0, 2),
            "create_seconds": round(info["created_at"] - info["imported_at"], 2),  # the adapter's imports
            "activate_seconds": round(info["active_at"] - info["created_at"], 2),
            "setup_seconds": round(info["setup_seconds"], 2),
            "first_batch_seconds": round(info["first_batch_at"] - info["active_at"], 2), "finite": info["finite"],
            "phases": info["phases"], "compile_phases": {k: round(v, 2) for k, v in info["compile_phases"].items()
                                                         if v >= 0.05},
            **({"throughput": info["throughput"]} if "throughput" in info else {})}


def main() -> None:
    ap = arg_parser(__doc__, "/tmp/batchscore-bench")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--modes", default="eager,cudagraph,compiled")
    ap.add_argument("--compile-timeout", type=float, default=None, help="seconds a cold start may take")
    ap.add_argument("--warm-starts", type=int, default=1, help="warm starts to measure, one after another")
    args = ap.parse_args()
    model = resnet50_onnx(args.work / "resnet50.onnx")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.precision]
    results: dict = {"gpu": torch.cuda.get_device_name(0), "machine": machine(), "torch": torch.__version__,
                     "batch_size": args.batch_size, "precision": args.precision}
    results["plain_eager_img_s"] = eager = round(plain_eager(args.batch_size, args.batches, dtype), 1)
    print("plain eager img/s:", eager, flush=True)
    for mode in args.modes.split(","):  # compiled last: its cold start (the compile) is by far the longest step
        if mode == "compiled":  # measured in fresh processes, as ranks load the package: never where it was built
            results["compiled_cold_start"] = start_to_first_batch(model, args, "cold")
            print("compiled cold start:", results["compiled_cold_start"], flush=True)
            write_results(args.out, "engine", results, show=False)
            if "error" in results["compiled_cold_start"]:
                break
            for n in range(args.warm_starts):
                name = "compiled_warm_start" + (f"_{n + 1}" if n else "")
                results[name] = start_to_first_batch(model, args, f"warm{n}", args.batches)
                print(f"{name}:", results[name], flush=True)
                write_results(args.out, "engine", results, show=False)
                if "throughput" in results[name]:
                    results["backend_compiled"] = {**results[name]["throughput"], "measured_in": name}
            if "backend_compiled" not in results:
                break
        else:
            results[f"backend_{mode}"] = backend(model, mode, args)
        results[f"backend_{mode}_vs_plain_eager"] = round(results[f"backend_{mode}"]["img_s"] / eager, 3)
        print(f"backend {mode}:", results[f"backend_{mode}"], flush=True)
        write_results(args.out, "engine", results, show=False)
    write_results(args.out, "engine", results)


if __name__ == "__main__":
    main()
