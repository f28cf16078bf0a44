"""Does the hardware decoder (nvImageCodec's C API, batchscore.hwjpeg) run faster from JPEG bytes in page-locked
host memory than from Python bytes (pageable)? Probe on one GPU; not part of the tool.

Why: torch.profiler showed each image's bytes copied "HtoD (Pageable -> Device)" at about 6 us an image, a third of
the GPU decoder's GPU time as scoring runs it (contention.py on an H200), and a pageable copy also holds the calling
CPU thread until the driver has staged it. Here the same 256-image batches go through `hwjpeg_parse` and
`hwjpeg_decode` from (a) bytes objects and (b) one pinned buffer holding the batch, each alone and beside the
engine's CUDA graph in a loop (contention.EngineLoop); with the calling thread's CPU time per image, the kernel
profile of each, and whether the pixels agree.

    python benchmarks/gpu/ab/probe_pinned.py [IMAGES] [ROUNDS]   # writes $OUT/probe-pinned.json
"""
import ctypes, json, os, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "benchmarks" / "gpu"), str(ROOT)]
os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "32")
import numpy as np
import torch
from contention import EngineLoop, kernels
from decode_pipeline import make_images

from batchscore import hwjpeg
from batchscore.engines import EngineOptions, create_engine
from batchscore.precision import quantize
from common import resnet50_onnx

n_images = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
WORK = Path("/tmp/batchscore-decode")
OUT = Path(os.environ.get("OUT", "/tmp")); OUT.mkdir(parents=True, exist_ok=True)
res = {"generate": make_images(WORK / "images", n_images, 500, 375)}
paths = sorted((WORK / "images").rglob("*.jpg"))[:n_images]
data = [p.read_bytes() for p in paths]
B = 256
batches = [data[i:i + B] for i in range(0, len(data), B)]
model = WORK / "resnet50-fp16.onnx"
if not model.is_file():
    quantize(resnet50_onnx(WORK / "resnet50.onnx"), model, "fp16")
engine = create_engine("torch", model, EngineOptions(B, device=0, precision="fp32", compile="cudagraph")).activate()

dec = hwjpeg.HwJpeg(0, (os.cpu_count() or 2) - 1)
stream = torch.cuda.Stream()
out = [torch.empty(B * 375 * 500 * 3 + 4096 * B, dtype=torch.uint8, device="cuda") for _ in range(2)]
# pinned: each batch's bytes side by side in one page-locked buffer (two, in turn), made before timing
pinned = []
for chunk in batches:
    sizes = np.array([len(d) for d in chunk], dtype=np.uintp)
    offs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uintp)
    buf = torch.empty(int(sizes.sum()), dtype=torch.uint8, pin_memory=True)
    buf.numpy()[:] = np.frombuffer(b"".join(chunk), dtype=np.uint8)
    pinned.append((buf, (buf.data_ptr() + offs).astype(np.uintp), sizes))


def decode_from(addresses, sizes, k):  # noqa: ANN001 - one batch through parse + decode, from raw addresses
    n = len(sizes)
    hw = np.zeros((n, 2), dtype=np.uint32)
    st = dec.lib.hwjpeg_parse(dec.handle, n, ctypes.cast(addresses.ctypes.data, ctypes.POINTER(ctypes.c_char_p)),
                              sizes.ctypes.data, hw.ctypes.data)
    assert st == 0, st
    offsets, nbytes, _ = hwjpeg.layout(hw)
    assert nbytes <= out[k % 2].numel()
    return dec.decode(hw, (out[k % 2].data_ptr() + offsets).astype(np.uintp), stream.cuda_stream), offsets


def take(nbytes, k):  # noqa: ANN001, ANN201
    assert nbytes <= out[k % 2].numel()
    return out[k % 2]


def run(mode: str, passes: int = 1) -> dict:
    images, cpu, start = 0, time.thread_time(), time.perf_counter()
    for _ in range(passes):
        for k, chunk in enumerate(batches):
            if mode == "pageable":
                _, _, _, ok = dec.decode_batch(chunk, lambda nbytes, k=k: take(nbytes, k), stream.cuda_stream)
            else:
                buf, addresses, sizes = pinned[k]
                ok, _ = decode_from(addresses, sizes, k)
            images += int(ok.sum())
    stream.synchronize()
    return {"img_s": round(images / (time.perf_counter() - start), 1), "images": images,
            "thread_cpu_us_per_image": round(1e6 * (time.thread_time() - cpu) / images, 1)}


for mode in ("pageable", "pinned"):
    run(mode)  # warm-up
# same pixels: the first batch both ways
dec.decode_batch(batches[0], lambda nbytes: take(nbytes, 0), stream.cuda_stream); stream.synchronize()
a = out[0].clone()
decode_from(pinned[0][1], pinned[0][2], 0); stream.synchronize()
res["same_pixels"] = bool(torch.equal(a, out[0]))
for mode in ("pageable", "pinned"):
    res[f"kernels_{mode}"] = kernels(lambda mode=mode: run(mode))
for r in range(rounds):
    for mode in ("pageable", "pinned"):
        alone = run(mode)
        with EngineLoop(engine) as loop:
            beside = run(mode)
            beside["engine_img_s"] = round(loop.rate(), 1)
        res[f"round{r}_{mode}"] = {"alone": alone, "beside_engine": beside}
        print(r, mode, alone, beside, flush=True)
    (OUT / "probe-pinned.json").write_text(json.dumps(res, indent=1))
for mode in ("pageable", "pinned"):
    k = res[f"kernels_{mode}"]
    print(mode, k["gpu_us_per_image"], "; ".join(f"{t['kernel'][:40]} {t['us_per_image']}" for t in k["top"][:4]))
print("same pixels", res["same_pixels"])
dec.close()
engine.deactivate()
