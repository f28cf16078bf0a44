"""GPU decode on one GPU, in one run: engine-only, decode-only per decoder, and `batchscore score` end to end
with decode = cpu and gpu, on a few thousand ImageNet-sized JPEGs made on the machine.

Images: `data/make_sample.py` scenes fitted to WxH (default 500×375) with mild sensor noise, JPEG quality 90,
written in parallel on every core. Model: torchvision's ResNet-50 with seeded weights (common.py) turned
into the FP16 file that `precision = "fp16"` scores (`batchscore.precision.quantize`). The score runs
name that FP16 file with `precision = "fp32"` ("score the file as it is"): the engine path is the same as
a precision = "fp16" job's (the torch backend runs a graph with FP16 weights in its own types), and the
accuracy gate is left out, which would run both models on the CPU and compare random-weight logits.

Measured in this order:
- engine only: the torch backend, batch N, eager, fed host arrays (pinned double buffering) and fed
  tensors already on the GPU (what GPU decode hands it), plus the FP32 file run at precision fp16;
- decode only: the CPU workers (Pillow, cores + 1 workers, processes from 4 cores as scoring runs them, read
  included), each GPU library raw (bytes in memory, batched, no resize: torchvision's nvJPEG; nvImageCodec's
  hardware decoder and its CUDA decoder);
- end to end: `python -m batchscore score --decode cpu`: rate over the scoring time
  (summary.json's aggregate images/s), per-stage seconds, bound and images per decoder;
- then `--rounds` rounds, alternating: the GPU decoder as scoring uses it, decode only, per library and
  read-worker count (`--score-workers`; 0 is as many as scoring gives it), reading, decoding, resizing,
  cropping and normalising; and `score --decode gpu --gpu-decoder LIB --workers N` end to end. Each reports
  its median round (single runs varied by ±15% on one machine). Then top-1 agreement of gpu with cpu;
- the difference between GPU- and CPU-decoded tensors on the first batch.

    python benchmarks/gpu/decode_pipeline.py --out $OUT      # prints a table, writes decode_pipeline.json
    python benchmarks/gpu/decode_pipeline.py --compile compiled --out $OUT   # the engine as an AOTInductor package
    python benchmarks/gpu/decode_pipeline.py --copies 4 --out $OUT   # 32,768 files: 4 hard links to each image
    python benchmarks/gpu/decode_pipeline.py --images 64 --model data/model.onnx --backend onnxruntime \\
        --modes cpu --work /tmp/dp                            # the CPU parts only, on a machine without GPU
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from common import arg_parser, machine, write_results

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


def make_images(folder: Path, count: int, w: int, h: int, copies: int = 1) -> dict:
    """`count` JPEGs in 10 sub-folders, made in parallel (before any CUDA use: the pool forks); those an earlier
    call made in `folder` with the same count and size are kept (FOLDER-made.json says so). `copies` > 1 adds
    hard links to them under FOLDER/copy<k>/: more files to score at no cost in time or disk, so that a run
    lasts long enough for its start-up not to weigh on its rate (8,192 images scored in about a second)."""
    made = folder.parent / f"{folder.name}-made.json"
    earlier = json.loads(made.read_text()) if made.is_file() else {}
    paths = [folder / f"c{i % 10}" / f"img_{i:06d}.jpg" for i in range(count)]
    if earlier.get("size") == f"{w}x{h}" and earlier.get("count") == count:
        result = {**earlier, "reused": True}
    else:
        shutil.rmtree(folder, ignore_errors=True)  # an earlier call's images of another count or size
        for sub in {p.parent for p in paths}:
            sub.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            sizes = list(pool.map(render, [(i, str(p), w, h) for i, p in enumerate(paths)], chunksize=32))
        result = {"count": count, "size": f"{w}x{h}", "mean_kb": round(sum(sizes) / len(sizes) / 1024, 1),
                  "seconds": round(time.perf_counter() - start, 1)}
        made.write_text(json.dumps(result))
    for old in folder.glob("copy*"):
        if not old.name[4:].isdigit() or int(old.name[4:]) >= copies:
            shutil.rmtree(old)
    for k in range(1, copies):
        for path in paths:
            link = folder / f"copy{k}" / path.relative_to(folder)
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, link)
    return {**result, "copies": copies}


def write_job(work: Path, model: Path, backend: str, batch_size: int, compile: str) -> Path:
    """WORK/job.toml: score WORK/images with `model` as it is (precision fp32: no CPU accuracy gate)."""
    job = work / "job.toml"
    job.write_text("\n".join([
        f'input = "{work / "images"}"', f'model = "{model}"', f'output = "{work / "out"}"',
        f'backend = "{backend}"', 'precision = "fp32"', f"batch_size = {batch_size}", "top_k = 5",
        f'cache_dir = "{work / "cache"}"', f'compile = "{compile}"', ""]))
    return job


def engine_only(model: Path, precision: str, batch_size: int, n: int, compile: str, cache: Path) -> dict:
    """The torch backend's images/s over `n` batches, fed host arrays and fed tensors on the GPU."""
    import torch
    from first_batch import host_batches, throughput

    from batchscore.engines import EngineOptions, create_engine

    options = EngineOptions(batch_size, device=0, precision=precision, compile=compile, cache_dir=cache)
    engine = create_engine("torch", model, options).activate()
    host = host_batches(batch_size, 3)
    result = {f"{feed}_fed_img_s": throughput(engine, inputs, n)["img_s"]
              for feed, inputs in (("host", host), ("device", [torch.from_numpy(h).cuda() for h in host]))}
    engine.deactivate()
    torch.cuda.empty_cache()
    return result


def decode_only(items: list, spec, batch_size: int, workers: int, lib=None) -> dict:  # noqa: ANN001
    """Images/s of the decode stage alone, as scoring runs it (read included), tensors ready; `lib`: a GPU
    library (batchscore.decode.gpu.open_library), else the CPU decoder."""
    from batchscore.decode.cpu import CpuDecoder, decode_executor
    from batchscore.decode.gpu import GpuDecoder
    from batchscore.decode.procs import decode_processes
    from batchscore.pipeline import batches, default_prefetch

    counts: dict[str, int] = {}
    kind = "auto" if lib is None else "thread"  # as the runner chooses: CPU decode in processes from 4 cores
    with (decode_processes(kind, workers, len(os.sched_getaffinity(0)), spec.shape, print) as procs,
          decode_executor(workers) as pool,
          closing(GpuDecoder(lib, spec, pool) if lib else CpuDecoder(spec, pool, procs=procs)) as decoder):
        start = time.perf_counter()
        ahead = default_prefetch(workers, batch_size, lib is not None)  # as the runner sizes it
        for batch in batches(items, decoder, batch_size, ahead):
            for k, v in batch.decoders.items():
                counts[k] = counts.get(k, 0) + v
        seconds = time.perf_counter() - start
    return {"img_s": round(len(items) / seconds, 1), "seconds": round(seconds, 3), "decoders": counts}


def raw_decode(paths: list[Path], batch_size: int, library: str, kind: str = "") -> dict:
    """One library's batched decode alone: bytes already in memory, RGB uint8 out on the GPU, no resize.
    torchvision: decode_jpeg on the GPU; nvimgcodec: a Decoder limited to one backend `kind`."""
    import torch

    if library == "torchvision":
        from torchvision.io import ImageReadMode, decode_jpeg

        data = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
        run = lambda chunk: decode_jpeg(chunk, mode=ImageReadMode.RGB, device="cuda")  # noqa: E731
    else:
        from nvidia import nvimgcodec

        decoder = nvimgcodec.Decoder(device_id=0, backends=[nvimgcodec.Backend(getattr(nvimgcodec.BackendKind, kind))])
        data = [nvimgcodec.CodeStream(p.read_bytes()) for p in paths]
        run = lambda chunk: decoder.decode(chunk, cuda_stream=torch.cuda.current_stream().cuda_stream)  # noqa: E731
    chunks = [data[i:i + batch_size] for i in range(0, len(data), batch_size)]
    run(chunks[0])  # warm-up (decoder state, buffers)
    torch.cuda.synchronize()
    start = time.perf_counter()
    decoded = sum(sum(image is not None for image in run(chunk)) for chunk in chunks)
    torch.cuda.synchronize()
    return {"img_s": round(len(data) / (time.perf_counter() - start), 1), "decoded": int(decoded)}


def tensor_difference(items: list, spec, batch_size: int, workers: int, library: str) -> dict:  # noqa: ANN001
    """GPU- against CPU-decoded tensors of the first batch (normalised units; 1 level ≈ 0.0175)."""
    from batchscore.decode.cpu import CpuDecoder, decode_executor
    from batchscore.decode.gpu import GpuDecoder, open_library, probe
    from batchscore.pipeline import batches

    lib = open_library(library, 0, os.cpu_count() or 1)
    try:
        probe(lib)
        with decode_executor(workers) as pool:
            cpu_batch = next(batches(items[:batch_size], CpuDecoder(spec, pool), batch_size))
            with closing(GpuDecoder(lib, spec, pool)) as gpu:
                gpu_batch = next(batches(items[:batch_size], gpu, batch_size))
    finally:
        lib.close()
    diff = np.abs(cpu_batch.tensors - gpu_batch.tensors.cpu().numpy())
    per_image = diff.reshape(len(diff), -1).mean(axis=1)
    return {"images": len(diff), "mean_abs": round(float(diff.mean()), 5),
            "p99_abs": round(float(np.percentile(diff, 99)), 4), "max_abs": round(float(diff.max()), 4),
            "worst_image_mean_abs": round(float(per_image.max()), 5)}


def score(job: Path, mode: str, library: str, workers: int, out: Path, timeout: float) -> dict:
    """`python -m batchscore score --decode MODE --gpu-decoder LIB --workers W` (W = 0: the default for the mode):
    rate, stages and decoders from summary.json."""
    cmd = [sys.executable, "-m", "batchscore", "score", "--job", str(job), "--decode", mode, "--gpu-decoder",
           library, "--workers", str(workers), "--output", str(out), "--overwrite"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    print(f"$ {' '.join(cmd)}\n{proc.stdout[-2500:]}{proc.stderr[-1500:]}", flush=True)
    if proc.returncode:
        return {"error": f"exit {proc.returncode}: {proc.stderr[-600:]}"}
    summary = json.loads((out / "summary.json").read_text())
    rank = summary["per_rank"][0]
    return {"img_s": summary["aggregate_images_per_s"], "scoring_s": summary["scoring_seconds"],
            "steady_img_s": summary.get("steady_images_per_s"), "first_batch_s": summary.get("first_batch_seconds"),
            "wall_s": summary["wall_seconds"], "decode": summary.get("decode"), "decoders": summary.get("decoders"),
            "failed": summary["images"]["failed"], "device": rank["device"], "workers": rank["workers"],
            "stages": rank["stages"], "bound": rank["bound"], "busy_fraction": rank.get("busy_fraction")}


def suffix(workers: int = 0) -> str:
    """Result names of runs with set read workers end in _w<n>."""
    return f"_w{workers}" if workers else ""


def top1(path: Path) -> dict[str, int]:
    import h5py

    with h5py.File(path, "r") as f:
        keys = [k.decode() if isinstance(k, bytes) else k for k in f["key"][:]]
        return dict(zip(keys, f["topk_index"][:, 0].tolist()))


def main() -> int:
    ap = arg_parser(__doc__, "/tmp/batchscore-decode")
    ap.add_argument("--images", type=int, default=8192, help="distinct JPEGs to generate")
    ap.add_argument("--copies", type=int, default=1, help="score each image this many times (hard-linked copies: "
                                                          "a longer run, no longer to generate)")
    ap.add_argument("--size", default="500x375", help="W x H of the generated JPEGs")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--engine-batches", type=int, default=30)
    ap.add_argument("--model", type=Path, default=None, help="default: ResNet-50 (seeded) and its FP16 file")
    ap.add_argument("--backend", default="torch")
    ap.add_argument("--modes", default="cpu,gpu")
    ap.add_argument("--libraries", default="nvimgcodec,torchvision", help="GPU decode libraries to measure")
    ap.add_argument("--score-workers", default="0", help="read workers of the GPU decoder's decode-only and gpu-mode "
                                                         "score runs, e.g. 1,2,4 (0: the runner's default)")
    ap.add_argument("--score-timeout", type=float, default=150)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the GPU decode-only and decode = gpu end-to-end "
                                                          "runs, alternating; each reports its median round")
    ap.add_argument("--compile", default="eager", help="the torch engine's compile mode, engine only and scoring "
                                                       "(compiled: its package is built in the engine-only step)")
    args = ap.parse_args()
    from batchscore.preprocess import Preprocess
    from batchscore.sources import list_items

    w, h = (int(v) for v in args.size.lower().split("x"))
    worker_counts = [int(n) for n in args.score_workers.split(",")]
    cores = os.cpu_count() or 1
    workers = cores + 1  # the runner's default for a rank that owns every core
    results: dict = {"benchmark": "decode_pipeline", "images": args.images * args.copies, "batch_size": args.batch_size,
                     "cores": cores, "decode_workers": workers, "compile": args.compile, "machine": machine()}

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

    step("generate", make_images, args.work / "images", args.images, w, h, args.copies)
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
        step("engine_fp16_file", engine_only, model, "fp32", args.batch_size, args.engine_batches, args.compile,
             args.work / "cache")
        if args.model is None and args.compile == "eager":  # compiled: a second package build, not worth it
            step("engine_fp32_file_at_fp16", engine_only, source, "fp16", args.batch_size, args.engine_batches,
                 args.compile, args.work / "cache")
    step("decode_cpu", decode_only, items, spec, args.batch_size, workers)
    from batchscore.decode.gpu import libraries

    libs = [lib for lib in args.libraries.split(",") if lib in libraries(lib)] if have_gpu else []
    results["libraries"] = libs
    if have_gpu:
        from batchscore.decode.gpu import GpuDecoder, default_workers, open_library, probe

        paths = [Path(it.path) for it in items]
        for lib in libs:
            for kind in (("HW_GPU_ONLY", "GPU_ONLY", "HYBRID_CPU_GPU") if lib == "nvimgcodec" else ("",)):
                step(f"raw_{lib}{'_' + kind if kind else ''}", raw_decode, paths, args.batch_size, lib, kind)
        if libs:
            step("tensor_difference", tensor_difference, items, spec, args.batch_size, workers, libs[0])

    job = write_job(args.work, model, args.backend, args.batch_size, args.compile)
    runs = []
    for mode in args.modes.split(","):
        runs += ([(f"score_gpu_{lib}{suffix(w)}", mode, lib, w) for lib in libs for w in worker_counts]
                 if mode == "gpu" else [(f"score_{mode}", mode, "auto", 0)])
    for name, mode, lib, readers in runs:
        if mode != "gpu":
            step(name, score, job, mode, lib, readers, args.work / f"out-{name}", args.score_timeout)

    def gpu_decode_only(name: str, readers: int) -> dict:
        lib = open_library(name, 0, cores)
        try:
            probe(lib)
            with ThreadPoolExecutor(1) as pool, closing(GpuDecoder(lib, spec, pool)) as warm:
                warm.warm_up(items[:args.batch_size])  # as scoring opens it: first-use costs paid before
            readers = readers or default_workers(cores, True)  # 0: as scoring sizes them (the workers only read)
            return {**decode_only(items, spec, args.batch_size, readers, lib), "workers": readers}
        finally:
            lib.close()

    repeated = [(f"decode_gpu_{lib}{suffix(w)}", gpu_decode_only, lib, w) for lib in libs for w in worker_counts]
    repeated += [(name, score, job, mode, lib, readers, args.work / f"out-{name}", args.score_timeout)
                 for name, mode, lib, readers in runs if mode == "gpu"]
    for r in range(args.rounds):  # decode only and end to end alternate, so drift on the machine hits both
        for name, fn, *fargs in repeated:
            step(f"round{r}_{name}", fn, *fargs)
    for name, *_ in repeated:
        median_round(results, name, [results.pop(f"round{r}_{name}") for r in range(args.rounds)])
    for name, *_ in runs:
        if name.startswith("score_gpu_") and "error" not in results[name] and "score_cpu" in results \
                and "error" not in results["score_cpu"]:
            cpu = top1(args.work / "out-score_cpu" / "scores.h5")
            gpu = top1(args.work / f"out-{name}" / "scores.h5")
            results[f"top1_agreement_{name[10:]}_vs_cpu_pct"] = round(100 * np.mean([cpu[k] == gpu[k] for k in cpu]), 3)

    report(results)
    write_results(args.out, "decode_pipeline", results, show=False)
    return 0


def median_round(results: dict, name: str, rounds: list[dict]) -> None:
    """results[name]: the round with the median images/s (the lower of the middle two for an even count), and
    every round's images/s; a failed round is kept only when every round failed."""
    good = sorted((r for r in rounds if "img_s" in r), key=lambda r: r["img_s"])
    results[name] = {**(good[(len(good) - 1) // 2] if good else rounds[-1]),
                     "rounds_img_s": [r.get("img_s") for r in rounds]}


def rate(results: dict, name: str, key: str = "img_s") -> float | None:
    value = results.get(name, {})
    return value.get(key) if isinstance(value, dict) else None


def report(results: dict) -> None:
    """The table, the targets and the GPU runs' stages, on stdout and into `results`."""
    rows = [("engine only, FP16 file, fed host arrays", rate(results, "engine_fp16_file", "host_fed_img_s")),
            ("engine only, FP16 file, fed GPU tensors", rate(results, "engine_fp16_file", "device_fed_img_s")),
            ("engine only, FP32 file at fp16, host-fed", rate(results, "engine_fp32_file_at_fp16", "host_fed_img_s")),
            (f"decode only: Pillow, {results['decode_workers']} workers (read incl.)", rate(results, "decode_cpu"))]
    rows += [(f"decode only: {name[4:]} raw, batched (no read/resize)", rate(results, name))
             for name in results if name.startswith("raw_")]
    rows += [(f"decode only: GPU decoder {name[11:]} (read, decode, resize, normalise)", rate(results, name))
             for name in results if name.startswith("decode_gpu_")]
    ends = [name for name in results if name.startswith("score_")]
    rows += [(f"end to end: {name[6:]}", rate(results, name)) for name in ends]
    print(f"\ndecode_pipeline on {results.get('device')}: {results['images']} JPEGs "
          f"{results.get('generate', {}).get('size')} (mean {results.get('generate', {}).get('mean_kb')} KB), "
          f"batch {results['batch_size']}, {results['cores']} cores")
    print(f"{'':<66} {'images/s':>10}")
    for label, value in rows:
        print(f"{label:<66} {value if value is not None else 'n/a':>10}")
    engine = rate(results, "engine_fp16_file", "device_fed_img_s")
    decoders = [v for v in (rate(results, n) for n in results if n.startswith("decode_")) if v]
    gpu_e2e = [v for v in (rate(results, n) for n in ends if n != "score_cpu") if v]
    cpu_e2e = rate(results, "score_cpu")
    targets = {}
    if engine and decoders and gpu_e2e:
        bound = min(engine, max(decoders))
        targets["best_gpu_e2e_vs_slower_of_engine_and_best_decode"] = round(max(gpu_e2e) / bound, 3)
    if gpu_e2e and cpu_e2e:
        targets["best_gpu_e2e_vs_cpu_e2e"] = round(max(gpu_e2e) / cpu_e2e, 2)
    results["targets"] = {**targets, "goal_e2e_fraction": 0.9, "goal_speedup_vs_cpu": 2.0}
    print(f"targets: {targets} (goals: >= 0.90 and >= 2.0)")
    for name in results:
        if name.startswith("top1_agreement"):
            print(f"{name}: {results[name]}%")
    for name in ends:
        run = results[name]
        if "stages" in run:
            stages = ", ".join(f"{k} {v:.2f}" for k, v in run["stages"].items())
            print(f"stages {name[6:]} (s): {stages}; bound: {run['bound']}; busy: {run.get('busy_fraction')}; "
                  f"decoders: {run['decoders']}")


if __name__ == "__main__":
    raise SystemExit(main())
