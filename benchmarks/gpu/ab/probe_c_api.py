"""The hardware step through nvImageCodec's C API (batchscore/hwjpeg.py) against its Python API, on one GPU:
calls a second of one lane's `decode` of 256 JPEGs (the decode and the CHW views, as scoring calls it), with
15 and 4 of the library's CPU threads, alone, while a second thread runs a pure-Python loop (the interpreter
lock's convoy: the Python API takes the lock back once per image) and while it keeps a core busy without the
lock; the C API's parse and decode calls timed apart. Same pixels checked on the batch.

    python benchmarks/gpu/ab/probe_c_api.py [IMAGES_DIR]     # writes $OUT/probe-c-api.json
"""
import hashlib, json, os, sys, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT / "benchmarks" / "gpu"), str(ROOT)]
OUT = Path(os.environ.get("OUT", "/tmp/expout")); OUT.mkdir(parents=True, exist_ok=True)
import torch
from batchscore import hwjpeg
from batchscore.gpudecode import GpuDecoder

folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/exp/images")
if not folder.exists():
    import decode_pipeline as dp
    dp.make_images(folder, 1024, 500, 375, 1)
data = [p.read_bytes() for p in sorted(folder.rglob("*.jpg"))[:256]]


def measure(work, busy: str, seconds: float = 1.0) -> dict:
    """Calls a second of `work`, with a second thread idle, in a pure-Python loop ("python": holds the lock) or
    hashing 64 MB at a time ("native": a core busy, the lock let go); "python_si": the pure-Python loop with a
    0.1 ms switch interval instead of 5 ms (how long a thread waits for the lock before asking for it)."""
    stop, count = threading.Event(), [0]
    big = bytes(64 << 20)

    def counter():
        n = 0
        while not stop.is_set():
            if busy == "native":
                hashlib.sha256(big)
            n += 1
        count[0] = n
    th = threading.Thread(target=counter)
    interval = sys.getswitchinterval()
    if busy == "python_si":
        sys.setswitchinterval(1e-4)
    if busy != "none":
        th.start()
    t, calls = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        work(); calls += 1
    stop.set()
    if busy != "none":
        th.join()
    sys.setswitchinterval(interval)
    el = time.perf_counter() - t
    return {"calls_per_s": round(calls / el, 1), "img_per_s": round(calls * len(data) / el), "busy": busy}


def timed(obj, name, into):
    """Wrap obj.name to add its wall seconds to into[name]."""
    fn = getattr(obj, name)

    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            into[name] = into.get(name, 0.0) + time.perf_counter() - t
    setattr(obj, name, wrapper)


results = {"images": len(data), "runs": []}
images = {}
for threads in (15, 4):
    for api in ("c_api", "python_api"):
        os.environ[hwjpeg.OFF] = "1" if api == "c_api" else "0"
        gpu = GpuDecoder(0, library="nvimgcodec", threads=threads)
        gpu.probe()
        lib, stream = gpu.lib, gpu.lanes[0].stream
        results[f"{api}_label"] = lib.label
        prepared = [lib.prepare(d) for d in data]
        parts = {}
        if lib.native is not None:
            timed(lib.native, "parse", parts), timed(lib.native, "decode", parts)
        with torch.cuda.device(0), torch.cuda.stream(stream):
            def call():
                out = lib.decode(prepared, stream)
                t = time.perf_counter()
                stream.synchronize()
                parts["sync"] = parts.get("sync", 0.0) + time.perf_counter() - t
                return out
            got = call()
            images.setdefault(api, [i for i, _ in got])
            for busy in ("none", "python", "python_si", "native", "none", "python", "python_si", "native"):
                parts.clear()
                r = {"api": api, "threads": threads, **measure(call, busy)}
                calls = r["calls_per_s"] and max(1, round(r["calls_per_s"]))
                r.update({f"{k}_ms_per_call": round(1e3 * v / calls, 2) for k, v in parts.items()})
                results["runs"].append(r)
                print(r, flush=True)
        gpu.close()
same = all(a is not None and b is not None and a.shape == b.shape and torch.equal(a, b)
           for a, b in zip(images["c_api"], images["python_api"]))
results["same_pixels"] = same
print("same pixels", same, flush=True)
(OUT / "probe-c-api.json").write_text(json.dumps(results, indent=1))
