"""The FP16 ResNet-50 as the torch engine converts it, with and without `fuse_conv_relu` (cuDNN's fused
convolution + bias [+ sum] + ReLU): img/s of each one's CUDA graph at batch 256 in alternating rounds, their GPU
time per kernel (eager forward, profiler), how far their logits differ on the same inputs, and how far each is
from the FP32 model run in FP32.

    python benchmarks/gpu/ab/probe_fuse.py    # makes /tmp/exp's model if missing; writes $OUT/probe-fuse.json
"""
import json, os, statistics, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "benchmarks" / "gpu"), str(ROOT)]
import torch

from batchscore.engines.torch_backend import convert, fuse_conv_relu
from batchscore.precision import quantize
from common import resnet50_onnx
from contention import kernels

WORK = Path("/tmp/exp")
OUT = Path(os.environ.get("OUT", "/tmp/expout")); OUT.mkdir(parents=True, exist_ok=True)
model = WORK / "resnet50-fp16.onnx"
if not model.exists():
    quantize(resnet50_onnx(WORK / "resnet50.onnx"), model, "fp16")
dev = torch.device("cuda", 0)
torch.backends.cudnn.benchmark = True
res = {"torch": torch.__version__, "cudnn": torch.backends.cudnn.version(), "device": torch.cuda.get_device_name(0)}


def build(fuse: bool) -> dict:
    t = time.perf_counter()
    net = convert(model, torch.float16, dev)
    fused = fuse_conv_relu(net.net) if fuse else 0
    x = torch.zeros(256, 3, 224, 224, device=dev)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode():
        with torch.cuda.stream(side):
            for _ in range(3):
                net(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = net(x)
    torch.cuda.synchronize()
    return {"net": net, "x": x, "graph": graph, "out": out[0], "fused": fused, "setup_s": round(time.perf_counter() - t, 2)}


def rate(e: dict, reps: int = 40) -> float:
    e["graph"].replay(); torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        e["graph"].replay()
    torch.cuda.synchronize()
    return round(256 * reps / (time.perf_counter() - t))


def eager(e: dict, n: int = 4) -> dict:
    with torch.inference_mode():
        for _ in range(n):
            e["net"](e["x"])
    return {"images": 256 * n}


plain, fused = build(False), build(True)
res["fused_chains"], res["setup_s"] = fused["fused"], [plain["setup_s"], fused["setup_s"]]
res["rounds"] = []
for r in range(4):
    res["rounds"].append({"plain": rate(plain), "fused": rate(fused)})
    print(res["rounds"][-1], flush=True)
res["plain_median"] = statistics.median(r["plain"] for r in res["rounds"])
res["fused_median"] = statistics.median(r["fused"] for r in res["rounds"])
gen = torch.Generator(dev).manual_seed(0)
diffs, agree, n = [], 0, 0
for _ in range(4):
    batch = torch.randn(256, 3, 224, 224, device=dev, generator=gen)
    for e in (plain, fused):
        e["x"].copy_(batch); e["graph"].replay()
    torch.cuda.synchronize()
    a, b = plain["out"].float(), fused["out"].float()
    diffs.append(((a - b).abs().max() / a.abs().max()).item())
    agree += (a.argmax(1) == b.argmax(1)).sum().item(); n += len(a)
res["max_abs_diff_over_max_logit"] = max(diffs)
res["top1_agreement"] = agree / n
for name, e in (("plain", plain), ("fused", fused)):
    k = kernels(lambda e=e: eager(e))
    res[f"kernels_{name}"] = {"gpu_us_per_image": k["gpu_us_per_image"], "top": k["top"][:8]}
    print(name, k["gpu_us_per_image"], flush=True)
# each against the FP32 model run in FP32 (no TF32): which of the two FP16 runs is nearer the truth. After the
# kernel profiles: where this ran before them (h200-probe-fuse-against-fp32.json), the profiles counted cuDNN's
# trials of its algorithms (two calls each of dozens of kernels) and doubled both engines' figures
torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
ref = convert(WORK / "resnet50.onnx", torch.float32, dev)
errors = {"plain": [], "fused": []}
for _ in range(4):
    batch = torch.randn(256, 3, 224, 224, device=dev, generator=gen)
    with torch.inference_mode():
        want = ref(batch)[0].float()
    for name, e in (("plain", plain), ("fused", fused)):
        e["x"].copy_(batch); e["graph"].replay(); torch.cuda.synchronize()
        got = e["out"].float()
        errors[name].append({"max_abs_over_max": ((got - want).abs().max() / want.abs().max()).item(),
                             "top1": (got.argmax(1) == want.argmax(1)).float().mean().item()})
res["against_fp32"] = {name: {"max_abs_over_max": max(x["max_abs_over_max"] for x in v),
                              "top1": sum(x["top1"] for x in v) / len(v)} for name, v in errors.items()}
print(res["against_fp32"], flush=True)
(OUT / "probe-fuse.json").write_text(json.dumps(res, indent=1))
print({k: v for k, v in res.items() if not k.startswith("kernels")}, flush=True)
