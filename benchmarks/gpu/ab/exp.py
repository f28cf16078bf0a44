"""A/B driver on one GPU: 8192 JPEGs and the FP16 ResNet-50 as decode_pipeline.py makes them, an interpreter-lock
probe, then each variant (make_variants.py) in alternating rounds: decode only, then `batchscore score --decode gpu`.

    python benchmarks/gpu/ab/exp.py VARIANT:LANES[:READERS[:LIBRARY]],... ROUNDS [IMAGES [COPIES]]   # writes $OUT/exp.json

VARIANT "main" is the working tree itself; LIBRARY is the GPU decode library (gpu_decoder: nvimgcodec, the
default, or torchvision).

The lock probe counts a pure-Python loop in a second thread while the main thread calls nvImageCodec's decode
of 256 JPEGs (and CodeStream parsing, and wrapping images as tensors: through the CUDA array interface, and
through DLPack), and torchvision's batched nvJPEG decode of the same 256: calls a second with and without it. COPIES hard-links each image that many times."""
import json, os, subprocess, sys, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT / "benchmarks" / "gpu"), str(ROOT)]
OUT = Path(os.environ.get("OUT", "/tmp/expout")); OUT.mkdir(parents=True, exist_ok=True)
WORK = Path("/tmp/exp")
configs = [c.split(":") for c in sys.argv[1].split(",")]  # variant:lanes
rounds = int(sys.argv[2])
n_images = int(sys.argv[3]) if len(sys.argv) > 3 else 8192
copies = int(sys.argv[4]) if len(sys.argv) > 4 else 1
results = {"configs": sys.argv[1], "runs": []}

def save():
    (OUT / "exp.json").write_text(json.dumps(results, indent=1))

import decode_pipeline as dp
results["generate"] = dp.make_images(WORK / "images", n_images, 500, 375, copies)
print(results["generate"], flush=True)
from common import resnet50_onnx
from batchscore.precision import quantize
src = resnet50_onnx(WORK / "resnet50.onnx")
model = WORK / "resnet50-fp16.onnx"
if not model.exists():
    t = time.perf_counter(); quantize(src, model, "fp16"); print("fp16", time.perf_counter() - t, flush=True)
COMPILE = os.environ.get("EXP_COMPILE", "cudagraph")  # "compiled": the package is prebuilt once, timed, first
job = dp.write_job(WORK, model, "torch", 256, COMPILE)
results["compile"] = COMPILE
if COMPILE == "compiled":
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "batchscore", "build", "--job", str(job)], capture_output=True,
                       text=True, timeout=300, env={**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('SITE', '/tmp/site')}"})
    results["prebuild"] = {"rc": p.returncode, "seconds": round(time.perf_counter() - t, 1), "tail": p.stdout[-600:] + p.stderr[-600:]}
    print("prebuild", results["prebuild"]["rc"], results["prebuild"]["seconds"], flush=True)

def gil_probe():
    import torch
    from nvidia import nvimgcodec
    paths = sorted((WORK / "images").rglob("*.jpg"))[:256]
    dec = nvimgcodec.Decoder(device_id=0, backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)])
    cs = [nvimgcodec.CodeStream(p.read_bytes()) for p in paths]
    s = torch.cuda.Stream()
    dec.decode(cs, cuda_stream=s.cuda_stream); torch.cuda.synchronize()
    def measure(work, seconds=1.0):
        stop, count = threading.Event(), [0]
        def counter():
            n = 0
            while not stop.is_set():
                n += 1
            count[0] = n
        th = threading.Thread(target=counter); t = time.perf_counter(); th.start()
        calls = 0
        while time.perf_counter() - t < seconds:
            work(); calls += 1
        stop.set(); th.join(); el = time.perf_counter() - t
        return {"counter_per_s": round(count[0] / el), "calls_per_s": round(calls / el, 1)}
    r = {"sleep": measure(lambda: time.sleep(0.01)),
         "hw_decode_256": measure(lambda: dec.decode(cs, cuda_stream=s.cuda_stream)),
         "cs_parse_256": measure(lambda: [nvimgcodec.CodeStream(p) for p in [x.read_bytes() for x in paths[:64]]])}
    imgs = dec.decode(cs, cuda_stream=s.cuda_stream)
    from torchvision.io import ImageReadMode, decode_jpeg
    tv = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    decode_jpeg(tv, mode=ImageReadMode.RGB, device="cuda:0"); torch.cuda.synchronize()
    r["tv_decode_256"] = measure(lambda: decode_jpeg(tv, mode=ImageReadMode.RGB, device="cuda:0"))
    r["wrap_256"] = measure(lambda: [torch.as_tensor(i, device="cuda:0").permute(2, 0, 1) for i in imgs])
    r["wrap_dlpack_256"] = measure(lambda: [torch.from_dlpack(i.__dlpack__(stream=s.cuda_stream)).permute(2, 0, 1)
                                            for i in imgs])
    for name, wrap in (("as_tensor", lambda i: torch.as_tensor(i, device="cuda:0")),
                       ("dlpack", lambda i: torch.from_dlpack(i.__dlpack__(stream=s.cuda_stream)))):
        t = time.perf_counter()
        for _ in range(20):
            [wrap(i) for i in imgs]
        r[f"wrap_{name}_alone_us_per_image"] = round(1e6 * (time.perf_counter() - t) / (20 * len(imgs)), 2)
    for key, call in (("hw_decode_256", lambda: dec.decode(cs, cuda_stream=s.cuda_stream)),
                      ("tv_decode_256", lambda: decode_jpeg(tv, mode=ImageReadMode.RGB, device="cuda:0"))):
        t = time.perf_counter(); n = 0
        while time.perf_counter() - t < 0.5:
            call(); n += 1
        r[f"{key}_alone_calls_per_s"] = round(n / (time.perf_counter() - t), 1)
    return r
try:
    results["gil_probe"] = gil_probe()
except Exception as e:
    results["gil_probe"] = repr(e)
print("gil", results["gil_probe"], flush=True); save()
site = os.environ.get("SITE", "/tmp/site")
for r in range(rounds):
    for variant, lanes, *rd in configs:
        name = f"{variant}{lanes}{'w' + rd[0] if rd else ''}{'_' + rd[1] if len(rd) > 1 else ''}_r{r}"
        pkg = ROOT if variant == "main" else HERE / "v" / variant
        env = {**os.environ, "PYTHONPATH": f"{pkg}:{site}", "PYTHONUNBUFFERED": "1"}
        t = time.perf_counter()
        p = subprocess.run([sys.executable, str(HERE / "exp_one.py"), name, lanes, str(WORK), str(WORK / "timing"),
                            *rd],
                           capture_output=True, text=True, cwd="/tmp", env=env, timeout=200)
        line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        try:
            res = json.loads(line)
        except ValueError:
            res = {"name": name, "error": (p.stdout[-800:] + p.stderr[-1500:])}
        res["call_s"] = round(time.perf_counter() - t, 1)
        results["runs"].append(res); save()
        print(name, {k: res.get(k) for k in ("decode_only_img_s", "e2e_img_s", "steady", "first", "wall", "e2e_call_s", "error")},
              flush=True)
