"""Can the GPU decoder keep its rate beside the engine if the engine runs on fewer SMs (a green context)?

    python benchmarks/gpu/ab/probe_green.py        # writes $OUT/probe_green.json

The engine's graph is captured on a stream of a green context of 124, 116 and 108 SMs (of the H200's 132), then
the raw hardware decoder and the GPU decoder as scoring runs it are measured alone and beside the engine looping
there. Run with CUDA's 8 hardware queues it gave erratic rates (h200-probe-green-contexts.json); the cause was the
queues (contention.py), not the SMs.
"""
import inspect, json, os, sys, time, threading, traceback
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "benchmarks" / "gpu"), str(ROOT)]
import torch
from nvidia import nvimgcodec
from contention import pipeline
from decode_pipeline import make_images
from common import resnet50_onnx
from batchscore.engines import EngineOptions, create_engine
from batchscore.gpudecode import GpuDecoder
from batchscore.precision import quantize
from batchscore.preprocess import Preprocess
from batchscore.sources import list_items
OUT = Path(os.environ["OUT"]); W = Path("/tmp/batchscore-decode")
res = {}
def save(): (OUT / "probe_green.json").write_text(json.dumps(res, indent=1))
res["generate"] = make_images(W / "images", 8192, 500, 375)
model = W / "resnet50-fp16.onnx"
if not model.is_file():
    quantize(resnet50_onnx(W / "resnet50.onnx"), model, "fp16")
engine = create_engine("torch", model, EngineOptions(256, device=0, precision="fp32", compile="cudagraph")).activate()
from torch.cuda.green_contexts import GreenContext
res["green_api"] = {"dir": [n for n in dir(GreenContext) if not n.startswith("_")],
                    "create": str(inspect.signature(GreenContext.create)),
                    "sms": torch.cuda.get_device_properties(0).multi_processor_count}
print(res["green_api"], flush=True)
x = engine.slots[0].dev_in
def graph_on(stream):
    with torch.cuda.stream(stream), torch.inference_mode():
        engine.module(x)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(g, stream=stream):
        engine.module(x)
    torch.cuda.synchronize()
    return g
class Loop:
    def __init__(self, g, stream): self.g, self.s, self.n, self.stop = g, stream, 0, threading.Event()
    def run(self):
        ev = torch.cuda.Event()
        with torch.cuda.stream(self.s):
            while not self.stop.is_set():
                self.g.replay(); ev.record(); ev.synchronize(); self.n += 256
    def __enter__(self):
        self.t = threading.Thread(target=self.run); self.t.start(); time.sleep(0.3)
        self.t0, self.n0 = time.perf_counter(), self.n; return self
    def rate(self): return round((self.n - self.n0) / (time.perf_counter() - self.t0), 1)
    def __exit__(self, *a): self.stop.set(); self.t.join()
paths = sorted((W / "images").rglob("*.jpg"))[:4096]
datas = [p.read_bytes() for p in paths]
cs = [nvimgcodec.CodeStream(d) for d in datas]
chunks = [cs[i:i + 256] for i in range(0, len(cs), 256)]
params = nvimgcodec.DecodeParams(apply_exif_orientation=True, color_spec=nvimgcodec.ColorSpec.SRGB,
                                 allow_any_depth=False)
hw = nvimgcodec.Decoder(device_id=0, max_num_cpu_threads=15,
                        backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)])
normal = torch.cuda.Stream()
def nvi(s):
    def f():
        n = 0
        for c in chunks:
            n += len(hw.decode(c, params=params, cuda_stream=s.cuda_stream)); s.synchronize()
        return n
    return f
items, spec = list_items([W / "images"]), Preprocess()
gpu = GpuDecoder(0, 1.0, "nvimgcodec", 16); gpu.probe()
def pipe():
    return pipeline(items, spec, 256, 1, gpu)["images"]
decoders = {"nvimgcodec_hw": nvi(normal), "pipeline": pipe}
def rate(fn):
    t = time.perf_counter(); n = fn(); return round(n / (time.perf_counter() - t), 1)
for f in decoders.values(): f()
engines = {"full": (engine.slots[0].graph, engine.compute_stream)}
ctxs = []
for n in (124, 116, 108):
    try:
        try:
            ctx = GreenContext.create(num_sms=n, device_id=0)
        except TypeError:
            ctx = GreenContext.create(n, 0)
        ctxs.append(ctx)
        st = ctx.Stream() if hasattr(ctx, "Stream") else None
        if st is None:
            ctx.set_context(); st = torch.cuda.Stream(); ctx.pop_context()
        engines[f"green{n}"] = (graph_on(st), st)
        res.setdefault("green_ok", []).append(n)
    except Exception as e:
        traceback.print_exc(); res[f"green{n}_error"] = f"{type(e).__name__}: {e}"[:500]
save()
for r in range(2):
    for ename, (g, st) in engines.items():
        with Loop(g, st) as lp:
            time.sleep(1.0); alone = lp.rate()
        row = {"engine_alone": alone}
        for dname, f in decoders.items():
            row[f"{dname}_alone"] = rate(f)
            with Loop(g, st) as lp:
                row[f"{dname}_beside"] = rate(f); row[f"{dname}_engine_beside"] = lp.rate()
        res[f"r{r}_{ename}"] = row; print(r, ename, row, flush=True); save()
