"""Which part of GPU decode waits for the engine's GPU work? Variants alone and beside the engine loop.

    python benchmarks/gpu/ab/probe_sync.py         # writes $OUT/probe_sync.json

nvImageCodec's hardware decoder with new or reused output images, with its preallocation options and with 4 CUDA
streams, and torchvision's nvJPEG; then a profile of the host's CUDA calls beside the engine. With CUDA's 8
hardware queues every variant fell alike (h200-probe-decode-sync.json): one event wait per image, behind the
engine's work on a shared queue (contention.py --connections).
"""
import json, os, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "benchmarks" / "gpu"), str(ROOT)]
import torch
from nvidia import nvimgcodec
from contention import EngineLoop
from decode_pipeline import make_images
from common import resnet50_onnx
from batchscore.engines import EngineOptions, create_engine
from batchscore.precision import quantize
OUT = Path(os.environ["OUT"]); W = Path("/tmp/batchscore-decode")
res = {}
res["generate"] = make_images(W / "images", 8192, 500, 375)
model = W / "resnet50-fp16.onnx"
if not model.is_file():
    quantize(resnet50_onnx(W / "resnet50.onnx"), model, "fp16")
engine = create_engine("torch", model, EngineOptions(256, device=0, precision="fp32", compile="cudagraph")).activate()
paths = sorted((W / "images").rglob("*.jpg"))[:4096]
datas = [p.read_bytes() for p in paths]
streams_ = [nvimgcodec.CodeStream(d) for d in datas]
chunks = [streams_[i:i + 256] for i in range(0, len(streams_), 256)]
s = torch.cuda.Stream()
params = nvimgcodec.DecodeParams(apply_exif_orientation=True, color_spec=nvimgcodec.ColorSpec.SRGB,
                                 allow_any_depth=False)
HW = nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)
def dec(options=""):
    return nvimgcodec.Decoder(device_id=0, max_num_cpu_threads=15, backends=[HW], options=options)
plain = dec()
pre = dec("nvjpeg_hw_decoder:preallocate_buffers=1 nvjpeg_hw_decoder:preallocate_batch_size=256 "
          "nvjpeg_hw_decoder:preallocate_width_hint=500 nvjpeg_hw_decoder:preallocate_height_hint=375")
streams4 = dec(":num_cuda_streams=4")
reuse_sets = {}
def new_images(d):
    def f(chunk, k):
        out = d.decode(chunk, params=params, cuda_stream=s.cuda_stream); s.synchronize(); return len(out)
    return f
def reuse(d, name):
    def f(chunk, k):
        imgs = reuse_sets.get((name, k))
        out = d.decode(chunk, images=imgs, params=params, cuda_stream=s.cuda_stream) if imgs else \
              d.decode(chunk, params=params, cuda_stream=s.cuda_stream)
        s.synchronize(); reuse_sets[(name, k)] = out; return len(out)
    return f
from torchvision.io import ImageReadMode, decode_jpeg
tv_data = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
tv_chunks = [tv_data[i:i + 256] for i in range(0, len(tv_data), 256)]
def tv(chunk, k):
    with torch.cuda.stream(s):
        out = decode_jpeg(tv_chunks[k], mode=ImageReadMode.RGB, device="cuda")
    s.synchronize(); return len(out)
variants = {"new_images": new_images(plain), "reuse_images": reuse(plain, "plain"),
            "preallocate": new_images(pre), "preallocate_reuse": reuse(pre, "pre"),
            "num_cuda_streams_4": new_images(streams4), "torchvision_nvjpeg": tv}
def measure(fn):
    t = time.perf_counter(); n = 0
    for k, c in enumerate(chunks):
        n += fn(c, k)
    return round(n / (time.perf_counter() - t), 1)
for name, fn in variants.items():
    measure(fn)  # warm-up, and the reuse sets
for r in range(2):
    for name, fn in variants.items():
        alone = measure(fn)
        with EngineLoop(engine) as loop:
            beside = measure(fn); eng = round(loop.rate(), 1)
        res[f"r{r}_{name}"] = {"alone": alone, "beside": beside, "engine_beside": eng}
        print(r, name, res[f"r{r}_{name}"], flush=True)
        (OUT / "probe_sync.json").write_text(json.dumps(res, indent=1))
from torch.profiler import ProfilerActivity, profile
for name in ("new_images", "reuse_images"):
    with EngineLoop(engine) as loop:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for k, c in enumerate(chunks[:4]):
                variants[name](c, k)
    rows = sorted(((e.key, e.self_cpu_time_total, e.count) for e in prof.key_averages()), key=lambda r: -r[1])[:15]
    res[f"profile_cpu_{name}"] = [{"event": k[:80], "self_cpu_us": round(t), "count": c} for k, t, c in rows]
    print(name, json.dumps(res[f"profile_cpu_{name}"], indent=0), flush=True)
(OUT / "probe_sync.json").write_text(json.dumps(res, indent=1))
