"""What the decoder thread and the loop spend per image on nvImageCodec's objects, alone (no engine): creating and
freeing code streams, wrapping decoded images as CHW tensors (DLPack) and freeing those tensors, and the properties
that tell a reused image's buffer (CUDA array interface, capacity, shape); and whether a decode into given images
(`images=`) gives back the same Python objects with the same buffers, which `ReusedImages.view` relies on.

    python benchmarks/gpu/ab/probe_views.py    # after exp.py or .carry/prof.py made /tmp/exp; writes $OUT/probe-views.json
"""
import gc, json, os, statistics, time
from pathlib import Path

import torch
from nvidia import nvimgcodec

WORK = Path("/tmp/exp")
OUT = Path(os.environ.get("OUT", "/tmp/expout"))
datas = [p.read_bytes() for p in sorted((WORK / "images").rglob("*.jpg"))[:256]]
hw = nvimgcodec.Decoder(device_id=0, backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)])
stream = torch.cuda.Stream()
gc.disable()


def us_per_image(make, free=None, rounds: int = 15) -> dict:
    made, freed = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        objs = make()
        t1 = time.perf_counter()
        del objs
        t2 = time.perf_counter()
        made.append((t1 - t) / 256 * 1e6)
        freed.append((t2 - t1) / 256 * 1e6)
    return {"make_us": round(statistics.median(made), 2), "free_us": round(statistics.median(freed), 2)}


res = {"code_streams": us_per_image(lambda: [nvimgcodec.CodeStream(d) for d in datas])}
streams = [nvimgcodec.CodeStream(d) for d in datas]
images = hw.decode(streams, cuda_stream=stream.cuda_stream)
stream.synchronize()
pointers = [i.__cuda_array_interface__["data"][0] for i in images]
again = hw.decode(streams, cuda_stream=stream.cuda_stream, images=images)
stream.synchronize()
res["same_objects"] = sum(a is b for a, b in zip(images, again))
res["same_buffers"] = sum(i.__cuda_array_interface__["data"][0] == p for i, p in zip(again, pointers))
res["wrap_chw"] = us_per_image(lambda: [torch.from_dlpack(i.__dlpack__(stream=stream.cuda_stream)).permute(2, 0, 1)
                                        for i in images])
for name, get in (("cuda_array_interface", lambda i: i.__cuda_array_interface__), ("capacity", lambda i: i.capacity),
                  ("shape", lambda i: i.shape)):
    res[name] = us_per_image(lambda get=get: [get(i) for i in images])["make_us"]
for name, kw in (("decode_new", {}), ("decode_into", {"images": images})):
    ms = []
    for _ in range(15):
        t = time.perf_counter()
        out = hw.decode(streams, cuda_stream=stream.cuda_stream, **kw)
        stream.synchronize()
        ms.append((time.perf_counter() - t) / 256 * 1e6)
        del out
    res[name + "_us"] = round(statistics.median(ms), 2)
print(json.dumps(res), flush=True)
OUT.mkdir(parents=True, exist_ok=True)
(OUT / "probe-views.json").write_text(json.dumps(res, indent=1))
