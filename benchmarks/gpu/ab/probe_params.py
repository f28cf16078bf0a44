"""What nvImageCodec's hardware-decoder call costs the calling thread per image, alone (no engine, no other thread),
by its settings: the decode parameters scoring uses, without EXIF orientation (scoring routes every rotated image
to the CPU path already, gpudecode.gpu_route), default parameters, fewer CPU threads, new or reused output images, and
batches of 64 or 256. Wall time of the call and the calling thread's CPU time (time.thread_time), µs per image, medians
of 15 calls; the GPU work is waited for after each call, outside the timed part.

    python benchmarks/gpu/ab/probe_params.py            # after exp.py or .carry/prof.py made /tmp/exp; $OUT/probe-params.json
    python benchmarks/gpu/ab/probe_params.py loop 4     # 4 s of scoring's decode call only, for a native profiler
"""
import json, os, statistics, sys, time
from pathlib import Path

import torch
from nvidia import nvimgcodec

WORK = Path("/tmp/exp")
OUT = Path(os.environ.get("OUT", "/tmp/expout"))
streams = [nvimgcodec.CodeStream(p.read_bytes()) for p in sorted((WORK / "images").rglob("*.jpg"))[:256]]
stream = torch.cuda.Stream()
cores = max(1, (os.cpu_count() or 2) - 1)
SCORING = dict(apply_exif_orientation=True, color_spec=nvimgcodec.ColorSpec.SRGB, allow_any_depth=False)


def decoder(threads: int = cores) -> object:
    return nvimgcodec.Decoder(device_id=0, max_num_cpu_threads=threads,
                              backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.HW_GPU_ONLY)])


def measure(dec: object, params: object, n: int = 256, into: bool = True, calls: int = 15) -> dict:
    batch = streams[:n]
    images = dec.decode(batch, params=params, cuda_stream=stream.cuda_stream)
    stream.synchronize()
    wall, cpu = [], []
    for _ in range(calls):
        t, c = time.perf_counter(), time.thread_time()
        out = dec.decode(batch, params=params, cuda_stream=stream.cuda_stream, **({"images": images} if into else {}))
        wall.append((time.perf_counter() - t) / n * 1e6)
        cpu.append((time.thread_time() - c) / n * 1e6)
        stream.synchronize()
        del out
    return {"wall_us": round(statistics.median(wall), 2), "cpu_us": round(statistics.median(cpu), 2)}


if sys.argv[1:2] == ["loop"]:
    dec, params = decoder(), nvimgcodec.DecodeParams(**SCORING)
    images = dec.decode(streams, params=params, cuda_stream=stream.cuda_stream)
    end, calls = time.perf_counter() + float(sys.argv[2]), 0
    while time.perf_counter() < end:
        dec.decode(streams, params=params, cuda_stream=stream.cuda_stream, images=images)
        stream.synchronize()
        calls += 1
    print(json.dumps({"loop_calls": calls}))
    sys.exit()

main = decoder()
res = {"images": len(streams), "cpu_threads": cores,
       "scoring": measure(main, nvimgcodec.DecodeParams(**SCORING)),
       "no_exif": measure(main, nvimgcodec.DecodeParams(**{**SCORING, "apply_exif_orientation": False})),
       "default_params": measure(main, nvimgcodec.DecodeParams()),
       "scoring_new_images": measure(main, nvimgcodec.DecodeParams(**SCORING), into=False),
       "scoring_64": measure(main, nvimgcodec.DecodeParams(**SCORING), n=64),
       "scoring_1_cpu_thread": measure(decoder(1), nvimgcodec.DecodeParams(**SCORING)),
       "scoring_4_cpu_threads": measure(decoder(4), nvimgcodec.DecodeParams(**SCORING))}
a = main.decode(streams, params=nvimgcodec.DecodeParams(**SCORING), cuda_stream=stream.cuda_stream)
b = main.decode(streams, params=nvimgcodec.DecodeParams(**{**SCORING, "apply_exif_orientation": False}),
                cuda_stream=stream.cuda_stream)
stream.synchronize()
res["no_exif_pixels_differ"] = sum(int((torch.as_tensor(x, device="cuda") != torch.as_tensor(y, device="cuda")).any())
                                   for x, y in zip(a, b))
print(json.dumps(res), flush=True)
OUT.mkdir(parents=True, exist_ok=True)
(OUT / "probe-params.json").write_text(json.dumps(res, indent=1))
