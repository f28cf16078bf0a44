"""The GPU decoder and the engine on one GPU: each alone, then side by side, and the GPU time of the decoder's
kernels, to say where the end-to-end rate goes when it stays below both.

Why: end to end with GPU decode ran at 0.63 of the slower of engine only and decode only on an H200, and with
the engine stubbed out the pipeline ran at the decode-only rate (docs/dev/decisions/0002). This tells apart the
causes, in one process, on the JPEGs and the FP16 ResNet-50 that decode_pipeline.py makes:
- kernels: the GPU time per image of every kernel the decoder launches (torch.profiler, which sees the
  decode library's kernels too), raw hardware decode and the GPU decoder as scoring runs it;
- alone: the engine replaying its CUDA graph in a loop (fed a batch already on the GPU, no copies), the raw
  hardware decoder (256 JPEGs a call, bytes in memory) and the GPU decoder as scoring runs it (read,
  decode, resize, crop, normalise);
- side by side: each decoder while the engine loop runs in a second thread that holds the interpreter lock
  only to launch a replay and to wait on it. The fractions of the alone rates add to about 2 when the two
  overlap fully on the GPU, to about 1 when they take turns.

`--connections` sets CUDA_DEVICE_MAX_CONNECTIONS, the context's hardware work queues, before CUDA starts (default:
batchscore.gpu.CUDA_CONNECTIONS, as a scoring rank runs; CUDA's own default is 8). On an H200 with 8 the decoders
fell to about 1.4k images/s beside the engine (fraction sum 1.04-1.09), with 32 they kept most of their rate
(1.7-2.0): with 8, their streams shared a queue with the engine's and waited behind its batches.

    python benchmarks/gpu/contention.py --out $OUT                 # prints a table, writes contention.json
    python benchmarks/gpu/contention.py --connections 8 --out $OUT # CUDA's default queues
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from common import arg_parser, machine, write_results
from decode_pipeline import decode_only, make_images

from batchscore.gpu import CUDA_CONNECTIONS


class EngineLoop:
    """The engine's CUDA graph replayed back to back in a thread of its own until stopped; counts images."""

    def __init__(self, engine) -> None:  # noqa: ANN001 - an active TorchEngine, compile = "cudagraph"
        import torch

        self.torch, self.engine, self.slot = torch, engine, engine.slots[0]
        self.batch = engine.options.batch_size
        self.images, self.stop = 0, threading.Event()
        self.thread = threading.Thread(target=self._run, name="engine-loop")

    def _run(self) -> None:
        torch = self.torch
        done = torch.cuda.Event()
        with torch.cuda.stream(self.engine.compute_stream):
            while not self.stop.is_set():
                self.slot.graph.replay()
                done.record()
                done.synchronize()  # waits without the interpreter lock
                self.images += self.batch

    def __enter__(self) -> EngineLoop:
        self.thread.start()
        time.sleep(0.3)  # running at its rate before the measured work starts
        self.start, self.started_images = time.perf_counter(), self.images
        return self

    def rate(self) -> float:
        return (self.images - self.started_images) / (time.perf_counter() - self.start)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def engine_alone(engine, seconds: float) -> dict:  # noqa: ANN001
    with EngineLoop(engine) as loop:
        time.sleep(seconds)
        return {"img_s": round(loop.rate(), 1)}


def raw_hw(chunks: list, decoder, stream, rounds: int) -> dict:  # noqa: ANN001
    """nvImageCodec's hardware decoder, `rounds` passes over the chunks of CodeStreams; no resize."""
    import torch

    start, images = time.perf_counter(), 0
    for _ in range(rounds):
        for chunk in chunks:
            images += sum(image is not None for image in decoder.decode(chunk, cuda_stream=stream.cuda_stream))
    torch.cuda.synchronize()
    return {"img_s": round(images / (time.perf_counter() - start), 1), "images": images}


def pipeline(items: list, spec, batch_size: int, readers: int, gpu) -> dict:  # noqa: ANN001
    """The GPU decoder on the library `gpu` as scoring runs it (decode_pipeline.decode_only, `readers` read
    workers)."""
    return {**decode_only(items, spec, batch_size, readers, gpu), "images": len(items)}


def beside_engine(engine, fn, *args) -> dict:  # noqa: ANN001
    """fn(*args) while the engine loop runs; both rates."""
    with EngineLoop(engine) as loop:
        result = fn(*args)
        result["engine_img_s"] = round(loop.rate(), 1)
    return result


def kernels(fn) -> dict:  # noqa: ANN001
    """GPU time per kernel name while fn() runs (its result's "images": those it handled), µs per image."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        images = fn()["images"]
        torch.cuda.synchronize()
    rows = [(e.key, e.self_device_time_total, e.count) for e in prof.key_averages()
            if e.self_device_time_total > 0]
    rows.sort(key=lambda r: -r[1])
    total = sum(r[1] for r in rows)
    return {"images": images, "gpu_us_per_image": round(total / images, 2),
            "top": [{"kernel": k[:90], "us_per_image": round(t / images, 2), "calls": c} for k, t, c in rows[:12]]}


def main() -> int:
    ap = arg_parser(__doc__, "/tmp/batchscore-decode")
    ap.add_argument("--images", type=int, default=8192)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--readers", type=int, default=1, help="read workers of the GPU decoder as scoring runs it")
    ap.add_argument("--rounds", type=int, default=2, help="alone / side by side pairs, alternating")
    ap.add_argument("--connections", default=CUDA_CONNECTIONS, help="CUDA_DEVICE_MAX_CONNECTIONS (set before CUDA "
                                                                    "starts; default: as a scoring rank sets it)")
    args = ap.parse_args()
    os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] = args.connections
    import torch
    from nvidia import nvimgcodec

    from batchscore.engines import EngineOptions, create_engine
    from batchscore.decode.gpu import open_library, probe
    from batchscore.precision import quantize
    from batchscore.preprocess import Preprocess
    from batchscore.sources import list_items
    from common import resnet50_onnx

    results: dict = {"benchmark": "contention", "images": args.images, "batch_size": args.batch_size,
                     "readers": args.readers, "cuda_device_max_connections": args.connections, "machine": machine(),
                     "device": torch.cuda.get_device_name(0)}
    results["generate"] = make_images(args.work / "images", args.images, 500, 375)
    model = args.work / "resnet50-fp16.onnx"
    if not model.is_file():
        quantize(resnet50_onnx(args.work / "resnet50.onnx"), model, "fp16")
    items, spec = list_items([args.work / "images"]), Preprocess()
    engine = create_engine("torch", model, EngineOptions(args.batch_size, device=0, precision="fp32",
                                                         compile="cudagraph")).activate()
    hw = nvimgcodec.Decoder(device_id=0, backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)])
    streams = [nvimgcodec.CodeStream(Path(it.path).read_bytes()) for it in items]
    chunks = [streams[i:i + args.batch_size] for i in range(0, len(streams), args.batch_size)]
    stream = torch.cuda.Stream()
    gpu = open_library("nvimgcodec", 0, os.cpu_count() or 1)
    probe(gpu)
    raw_hw(chunks[:2], hw, stream, 1)  # warm-up
    pipeline(items[:4 * args.batch_size], spec, args.batch_size, args.readers, gpu)

    few = items[:8 * args.batch_size]
    results["kernels_raw_hw"] = kernels(lambda: raw_hw(chunks[:8], hw, stream, 1))
    results["kernels_pipeline"] = kernels(lambda: pipeline(few, spec, args.batch_size, args.readers, gpu))
    results["kernels_engine"] = kernels(lambda: _graph_images(engine, 8))
    for r in range(args.rounds):
        for name, fn, fargs in (("raw_hw", raw_hw, (chunks, hw, stream, 2)),
                                ("pipeline", pipeline, (items, spec, args.batch_size, args.readers, gpu))):
            results[f"round{r}_{name}_alone"] = fn(*fargs)
            results[f"round{r}_{name}_beside_engine"] = beside_engine(engine, fn, *fargs)
            print(r, name, results[f"round{r}_{name}_alone"], results[f"round{r}_{name}_beside_engine"], flush=True)
        results[f"round{r}_engine_alone"] = engine_alone(engine, 2.0)
        write_results(args.out, "contention", results, show=False)
    gpu.close()
    engine.deactivate()
    report(results, args.rounds)
    write_results(args.out, "contention", results, show=False)
    return 0


def _graph_images(engine, replays: int) -> dict:  # noqa: ANN001
    """Replay the engine's graph `replays` times (for the kernel profile)."""
    import torch

    with torch.cuda.stream(engine.compute_stream):
        for _ in range(replays):
            engine.slots[0].graph.replay()
    torch.cuda.synchronize()
    return {"images": replays * engine.options.batch_size}


def report(results: dict, rounds: int) -> None:
    """Per round: alone and side-by-side rates, the fraction sum, and the decoder's kernel time per image."""
    print(f"\ncontention on {results['device']}: {results['images']} JPEGs 500x375, batch {results['batch_size']}, "
          f"{results['readers']} read worker(s), CUDA_DEVICE_MAX_CONNECTIONS={results['cuda_device_max_connections']}")
    for name in ("raw_hw", "pipeline", "engine"):
        k = results.get(f"kernels_{name}", {})
        print(f"GPU kernel time of {name}: {k.get('gpu_us_per_image')} us per image; top: "
              + "; ".join(f"{t['kernel'][:40]} {t['us_per_image']}" for t in k.get("top", [])[:4]))
    print(f"{'round':<6}{'decoder':<10}{'decode alone':>14}{'decode beside':>15}{'engine alone':>14}"
          f"{'engine beside':>15}{'fraction sum':>14}")
    for r in range(rounds):
        engine = results[f"round{r}_engine_alone"]["img_s"]
        for name in ("raw_hw", "pipeline"):
            alone, beside = results[f"round{r}_{name}_alone"], results[f"round{r}_{name}_beside_engine"]
            fraction = beside["img_s"] / alone["img_s"] + beside["engine_img_s"] / engine
            beside["fraction_sum"] = round(fraction, 3)
            print(f"{r:<6}{name:<10}{alone['img_s']:>14}{beside['img_s']:>15}{engine:>14}"
                  f"{beside['engine_img_s']:>15}{fraction:>14.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
