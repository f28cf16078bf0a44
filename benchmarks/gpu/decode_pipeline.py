"""GPU decode on one GPU, in one run: engine-only, decode-only per decoder, and `batchscore score` end to end
with decode = cpu, gpu and hybrid, on a few thousand ImageNet-sized JPEGs made on the machine.

Images: `data/make_sample.py` scenes fitted to WxH (default 500×375) with mild sensor noise, JPEG quality 90,
written in parallel on every core. Model: torchvision's ResNet-50 with seeded weights (common.py) turned
into the FP16 file that `precision = "fp16"` scores (`batchscore.precision.quantize`). The score runs
name that FP16 file with `precision = "fp32"` ("score the file as it is"): the engine path is the same as
a precision = "fp16" job's (the torch backend runs a graph with FP16 weights in its own types), and the
accuracy gate is left out, which would run both models on the CPU and compare random-weight logits.

Measured, each once, in this order:
- engine only: the torch backend, batch N, eager, fed host arrays (pinned double buffering) and fed
  tensors already on the GPU (what GPU decode hands it), plus the FP32 file run at precision fp16;
- decode only: the CPU workers (Pillow, cores + 1 threads, read included), raw nvJPEG (torchvision,
  batched, bytes in memory, no resize), and the GPU decoder as scoring uses it (read, nvJPEG, resize,
  crop, normalise; and hybrid);
- end to end: `python -m batchscore score --decode MODE` for each mode, rate over the scoring time
  (summary.json's aggregate images/s), with its per-stage seconds; top-1 agreement of gpu with cpu;
- the difference between GPU- and CPU-decoded tensors on the first batch.

    python benchmarks/gpu/decode_pipeline.py --out $OUT      # prints a table, writes decode_pipeline.json
    python benchmarks/gpu/decode_pipeline.py --images 64 --model data/model.onnx --backend onnxruntime \\
        --modes cpu --work /tmp/dp                            # the CPU parts only, on a machine without GPU
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import subprocess
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from common import write_results

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("make_sample", ROOT / "data" / "make_sample.py")
make_sample = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_sample)


def render(args: tuple[int, str, int, int]) -> int:
    """One image: a sample scene fitted to w×h, noise sigma 10, JPEG q90; returns its size in bytes."""
    index, path, w, h = args
    _, _, data = make_sample.render(index, seed=1)
    image = ImageOps.fit(Image.open(io.BytesIO(data)).convert("RGB"), (w, h))
    noisy = np.asarray(image, np.float32) + np.random.default_rng(index).normal(0, 10, (h, w, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    Path(path).write_bytes(buf.getvalue())
    return len(buf.getvalue())


def make_images(folder: Path, count: int, w: int, h: int) -> dict:
    """`count` JPEGs in 10 sub-folders, made in parallel (before any CUDA use: the pool forks)."""
    paths = [folder / f"c{i % 10}" / f"img_{i:06d}.jpg" for i in range(count)]
    for sub in {p.parent for p in paths}:
        sub.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        sizes = list(pool.map(render, [(i, str(p), w, h) for i, p in enumerate(paths)], chunksize=32))
    return {"count": count, "size": f"{w}x{h}", "mean_kb": round(sum(sizes) / len(sizes) / 1024, 1),
            "seconds": round(time.perf_counter() - start, 1)}


def engine_only(model: Path, precision: str, batch_size: int, n: int) -> dict:
    """The torch backend's images/s over `n` batches, fed host arrays and fed tensors on the GPU."""
    import torch

    from batchscore.engines import EngineOptions, create_engine

    engine = create_engine("torch", model, EngineOptions(batch_size, device=0, precision=precision)).activate()
    rng = np.random.default_rng(0)
    host = [rng.standard_normal((batch_size, 3, 224, 224), dtype=np.float32) for _ in range(3)]
    result = {}
    for feed, inputs in (("host", host), ("device", [torch.from_numpy(h).cuda() for h in host])):
        list(engine.infer_iter(inputs))  # warm-up
        start = time.perf_counter()
        for _ in engine.infer_iter(inputs[i % 3] for i in range(n)):
            pass
        result[f"{feed}_fed_img_s"] = round(n * batch_size / (time.perf_counter() - start), 1)
    engine.deactivate()
    torch.cuda.empty_cache()
    return result


def decode_only(items: list, spec, batch_size: int, workers: int, gpu=None) -> dict:  # noqa: ANN001
    """Images/s of the decode stage alone, as scoring runs it (read included), tensors ready."""
    from batchscore.pipeline import batches, decode_executor

    counts: dict[str, int] = {}
    with decode_executor(workers) as pool:
        start = time.perf_counter()
        for batch in batches(items, spec, batch_size, pool, max(2, 2 * workers // batch_size + 1), gpu=gpu):
            for k, v in batch.decoders.items():
                counts[k] = counts.get(k, 0) + v
        seconds = time.perf_counter() - start
    return {"img_s": round(len(items) / seconds, 1), "seconds": round(seconds, 3), "decoders": counts}


def raw_nvjpeg(paths: list[Path], batch_size: int) -> dict:
    """torchvision's batched nvJPEG alone: bytes already in memory, RGB uint8 out, no resize."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    chunks = [data[i:i + batch_size] for i in range(0, len(data), batch_size)]
    decode_jpeg(chunks[0], mode=ImageReadMode.RGB, device="cuda")  # warm-up (decoder state, buffers)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for chunk in chunks:
        decode_jpeg(chunk, mode=ImageReadMode.RGB, device="cuda")
    torch.cuda.synchronize()
    return {"img_s": round(len(data) / (time.perf_counter() - start), 1)}


def tensor_difference(items: list, spec, batch_size: int, workers: int) -> dict:  # noqa: ANN001
    """GPU- against CPU-decoded tensors of the first batch (normalised units; 1 level ≈ 0.0175)."""
    from batchscore.gpudecode import GpuDecoder
    from batchscore.pipeline import batches, decode_executor

    gpu = GpuDecoder(0)
    try:
        with decode_executor(workers) as pool:
            cpu_batch = next(batches(items[:batch_size], spec, batch_size, pool))
            gpu_batch = next(batches(items[:batch_size], spec, batch_size, pool, gpu=gpu))
    finally:
        gpu.close()
    diff = np.abs(cpu_batch.tensors - gpu_batch.tensors.cpu().numpy())
    per_image = diff.reshape(len(diff), -1).mean(axis=1)
    return {"images": len(diff), "mean_abs": round(float(diff.mean()), 5),
            "p99_abs": round(float(np.percentile(diff, 99)), 4), "max_abs": round(float(diff.max()), 4),
            "worst_image_mean_abs": round(float(per_image.max()), 5)}


def score(job: Path, mode: str, out: Path, timeout: float) -> dict:
    """`python -m batchscore score --decode MODE`: rate, stages and decoders from its summary.json."""
    cmd = [sys.executable, "-m", "batchscore", "score", "--job", str(job), "--decode", mode, "--output", str(out),
           "--overwrite"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    print(f"$ {' '.join(cmd)}\n{proc.stdout[-2500:]}{proc.stderr[-1500:]}", flush=True)
    if proc.returncode:
        return {"error": f"exit {proc.returncode}: {proc.stderr[-600:]}"}
    summary = json.loads((out / "summary.json").read_text())
    rank = summary["per_rank"][0]
    return {"img_s": summary["aggregate_images_per_s"], "scoring_s": summary["scoring_seconds"],
            "wall_s": summary["wall_seconds"], "decode": summary.get("decode"), "decoders": summary.get("decoders"),
            "failed": summary["images"]["failed"], "device": rank["device"], "workers": rank["workers"],
            "stages": rank["stages"], "bound": rank["bound"]}


def top1(path: Path) -> dict[str, int]:
    import h5py

    with h5py.File(path, "r") as f:
        keys = [k.decode() if isinstance(k, bytes) else k for k in f["key"][:]]
        return dict(zip(keys, f["topk_index"][:, 0].tolist()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results/gpu")))
    ap.add_argument("--work", type=Path, default=Path("/tmp/batchscore-decode"))
    ap.add_argument("--images", type=int, default=8192)
    ap.add_argument("--size", default="500x375", help="W x H of the generated JPEGs")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--engine-batches", type=int, default=30)
    ap.add_argument("--model", type=Path, default=None, help="default: ResNet-50 (seeded) and its FP16 file")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--modes", default="cpu,gpu,hybrid")
    ap.add_argument("--score-timeout", type=float, default=150)
    args = ap.parse_args()
    from batchscore.preprocess import Preprocess
    from batchscore.sources import list_items

    w, h = (int(v) for v in args.size.lower().split("x"))
    cores = os.cpu_count() or 1
    workers = cores + 1  # the runner's default for a rank that owns every core
    results: dict = {"benchmark": "decode_pipeline", "images": args.images, "batch_size": args.batch_size,
                     "cores": cores, "decode_workers": workers}

    def step(name: str, fn, *fargs):  # noqa: ANN001, ANN202 - a measurement that may fail on its own
        start = time.perf_counter()
        try:
            results[name] = fn(*fargs)
        except Exception as exc:  # record it and go on: one run has to bring back everything it can
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:800]}
        print(f"[{time.perf_counter() - start:6.1f} s] {name}: {results[name]}", flush=True)
        write_results(args.out, "decode_pipeline", results, show=False)
        return results[name]

    step("generate", make_images, args.work / "images", args.images, w, h)
    items = list_items([args.work / "images"])
    spec = Preprocess()
    import torch

    have_gpu = torch.cuda.is_available()
    results["device"] = torch.cuda.get_device_name(0) if have_gpu else "cpu"
    results["torch"] = torch.__version__
    if args.model is None:
        from batchscore.precision import quantize
        from common import resnet50_onnx

        source = resnet50_onnx(args.work / "resnet50.onnx")
        model = args.work / "resnet50-fp16.onnx"
        if not model.is_file():
            step("fp16_variant", lambda: quantize(source, model, "fp16"))
        results["model"] = "ResNet-50 (torchvision, seeded) FP16 file from batchscore.precision.quantize"
    else:
        source = model = args.model.resolve()
        results["model"] = str(model)

    if have_gpu and args.backend == "torch":
        step("engine_fp16_file", engine_only, model, "fp32", args.batch_size, args.engine_batches)
        if args.model is None:
            step("engine_fp32_file_at_fp16", engine_only, source, "fp16", args.batch_size, args.engine_batches)
    step("decode_cpu", decode_only, items, spec, args.batch_size, workers)
    if have_gpu:
        from batchscore.gpudecode import GpuDecoder

        step("decode_nvjpeg_raw", raw_nvjpeg, [Path(it.path) for it in items], args.batch_size)
        for name, share in (("decode_gpu", 1.0), ("decode_hybrid", 0.75)):
            decoder = GpuDecoder(0, share)
            decoder.probe()
            step(name, decode_only, items, spec, args.batch_size, workers, decoder)
            decoder.close()
        step("tensor_difference", tensor_difference, items, spec, args.batch_size, workers)

    job = args.work / "job.toml"
    job.write_text("\n".join([
        f'input = "{args.work / "images"}"', f'model = "{model}"', f'output = "{args.work / "out"}"',
        f'backend = "{args.backend}"', 'precision = "fp32"', f"batch_size = {args.batch_size}", "top_k = 5",
        f'cache_dir = "{args.work / "cache"}"', "gpu_decode_share = 0.75", ""]))
    for mode in args.modes.split(","):
        step(f"score_{mode}", score, job, mode, args.work / f"out-{mode}", args.score_timeout)
    if "gpu" in args.modes.split(",") and "error" not in results.get("score_gpu", {"error": 1}):
        cpu, gpu = top1(args.work / "out-cpu" / "scores.h5"), top1(args.work / "out-gpu" / "scores.h5")
        results["top1_agreement_gpu_vs_cpu_pct"] = round(100 * np.mean([cpu[k] == gpu[k] for k in cpu]), 3)

    report(results)
    write_results(args.out, "decode_pipeline", results, show=False)
    return 0


def rate(results: dict, name: str, key: str = "img_s") -> float | None:
    value = results.get(name, {})
    return value.get(key) if isinstance(value, dict) else None


def report(results: dict) -> None:
    """The table, the targets and the GPU run's stages, on stdout and into `results`."""
    rows = [("engine only, FP16 file, fed host arrays", rate(results, "engine_fp16_file", "host_fed_img_s")),
            ("engine only, FP16 file, fed GPU tensors", rate(results, "engine_fp16_file", "device_fed_img_s")),
            ("engine only, FP32 file at fp16, host-fed", rate(results, "engine_fp32_file_at_fp16", "host_fed_img_s")),
            (f"decode only: Pillow, {results['decode_workers']} threads (read incl.)", rate(results, "decode_cpu")),
            ("decode only: nvJPEG raw, batched (no read/resize)", rate(results, "decode_nvjpeg_raw")),
            ("decode only: GPU decoder (read, nvJPEG, resize, normalise)", rate(results, "decode_gpu")),
            ("decode only: hybrid, 75% GPU + CPU workers", rate(results, "decode_hybrid"))]
    rows += [(f"end to end: batchscore score --decode {m}", rate(results, f"score_{m}"))
             for m in ("cpu", "gpu", "hybrid")]
    print(f"\ndecode_pipeline on {results.get('device')}: {results['images']} JPEGs "
          f"{results.get('generate', {}).get('size')} (mean {results.get('generate', {}).get('mean_kb')} KB), "
          f"batch {results['batch_size']}, {results['cores']} cores")
    print(f"{'':<62} {'images/s':>10}")
    for label, value in rows:
        print(f"{label:<62} {value if value is not None else 'n/a':>10}")
    engine = rate(results, "engine_fp16_file", "device_fed_img_s")
    decoders = [v for v in (rate(results, n) for n in ("decode_cpu", "decode_gpu", "decode_hybrid")) if v]
    gpu_e2e, cpu_e2e = rate(results, "score_gpu"), rate(results, "score_cpu")
    best_e2e = max((v for v in (gpu_e2e, rate(results, "score_hybrid")) if v), default=None)
    targets = {}
    if engine and decoders and gpu_e2e:
        bound = min(engine, max(decoders))
        targets["gpu_e2e_vs_slower_of_engine_and_best_decode"] = round(gpu_e2e / bound, 3)
    if best_e2e and cpu_e2e:
        targets["best_gpu_or_hybrid_e2e_vs_cpu_e2e"] = round(best_e2e / cpu_e2e, 2)
    results["targets"] = {**targets, "goal_e2e_fraction": 0.9, "goal_speedup_vs_cpu": 2.0}
    print(f"targets: {targets} (goals: >= 0.90 and >= 2.0)")
    if "top1_agreement_gpu_vs_cpu_pct" in results:
        print(f"top-1 agreement, decode gpu vs cpu: {results['top1_agreement_gpu_vs_cpu_pct']}%")
    for mode in ("cpu", "gpu", "hybrid"):
        run = results.get(f"score_{mode}", {})
        if "stages" in run:
            stages = ", ".join(f"{k} {v:.2f}" for k, v in run["stages"].items())
            print(f"stages decode={mode} (s): {stages}; bound: {run['bound']}; decoders: {run['decoders']}")


if __name__ == "__main__":
    raise SystemExit(main())
