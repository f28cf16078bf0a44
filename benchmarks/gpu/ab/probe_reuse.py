"""nvImageCodec's hardware decoder into new output images (freed two calls later, as the scoring loop lets go of
a batch) against into reused ones (`images=`), alone and beside the engine's CUDA graph looping in a second thread
(contention.EngineLoop): ms per call of 256 JPEGs for the decode call and for freeing a batch's images.

    python benchmarks/gpu/ab/probe_reuse.py    # after exp.py has made /tmp/exp; writes $OUT/probe-reuse.json
"""
import json, os, statistics, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "benchmarks" / "gpu"), str(ROOT)]
os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "32")
import torch
from nvidia import nvimgcodec

from batchscore.engines import EngineOptions, create_engine
from contention import EngineLoop

WORK = Path("/tmp/exp")
OUT = Path(os.environ.get("OUT", "/tmp/expout"))
paths = sorted((WORK / "images").rglob("*.jpg"))[:256 * 8]
chunks = [[nvimgcodec.CodeStream(p.read_bytes()) for p in paths[i:i + 256]] for i in range(0, len(paths), 256)]
hw = nvimgcodec.Decoder(device_id=0, backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)])
stream = torch.cuda.Stream()
engine = create_engine("torch", WORK / "resnet50-fp16.onnx",
                       EngineOptions(256, device=0, precision="fp32", compile="cudagraph")).activate()


def run(reuse: bool, calls: int = 40) -> dict:
    decode_ms, free_ms, held, sets = [], [], [], [None, None, None]
    start = time.perf_counter()
    for n in range(calls):
        chunk = chunks[n % len(chunks)]
        t = time.perf_counter()
        into = sets[n % 3] if reuse else None
        images = hw.decode(chunk, cuda_stream=stream.cuda_stream, **({"images": into} if into else {}))
        decode_ms.append(1e3 * (time.perf_counter() - t))
        if reuse:
            sets[n % 3] = images
        held.append(images)
        if len(held) > 2:
            t = time.perf_counter()
            del held[0]
            free_ms.append(1e3 * (time.perf_counter() - t))
    held.clear()
    torch.cuda.synchronize()
    return {"img_s": round(256 * calls / (time.perf_counter() - start)), "decode_ms": round(statistics.median(decode_ms), 2),
            "free_ms": round(statistics.median(free_ms), 3), "free_ms_max": round(max(free_ms), 2),
            "capacity": images[0].capacity}


res = {"device": torch.cuda.get_device_name(0)}
run(False, 6), run(True, 6)  # warm-up
for r in range(2):
    for reuse in (False, True):
        name = "reuse" if reuse else "new"
        res[f"r{r}_{name}_alone"] = run(reuse)
        with EngineLoop(engine) as loop:
            res[f"r{r}_{name}_beside"] = run(reuse)
            res[f"r{r}_{name}_beside"]["engine_img_s"] = round(loop.rate())
        print(r, name, res[f"r{r}_{name}_alone"], res[f"r{r}_{name}_beside"], flush=True)
OUT.mkdir(parents=True, exist_ok=True)
(OUT / "probe-reuse.json").write_text(json.dumps(res, indent=1))
