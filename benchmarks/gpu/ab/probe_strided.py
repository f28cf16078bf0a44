"""What the resize's first steps cost on the GPU, per way of getting the C API's decoded run to float: a probe on one
GPU; not part of the tool.

Why: passing each size's run of the C API's buffer to the resize as one strided view (`gpudecode.batched`, G)
instead of stacking its images (B) made scoring slower on an H200 (h200-ab-strided-decodestream.json), though it
skips a copy. Here one 256-image run of 500x375 HWC pixels, laid out as `hwjpeg.layout` lays it, goes through:
  S  torch.stack of the views, .float()                     (B: main before G)
  C  one strided view, .to(float32, contiguous_format)      (G)
  L  one strided view, .float() (channels-last), the resize on that
  K  one strided view, .contiguous() (uint8, channels-first), .float()
each followed by the resize, crop and normalise into a float32 NCHW batch (gpudecode.resize_crop_normalise's
steps); GPU ms per batch from CUDA events (median of REPS), and whether the outputs agree.

    python benchmarks/gpu/ab/probe_strided.py [REPS]   # writes $OUT/probe-strided.json
"""
import json, os, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT)]
import numpy as np
import torch

from batchscore import hwjpeg
from batchscore.gpudecode import resized_size, run_views
from batchscore.preprocess import Preprocess

reps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
OUT = Path(os.environ.get("OUT", "/tmp")); OUT.mkdir(parents=True, exist_ok=True)
n, h, w = 256, 375, 500
spec = Preprocess()
offsets, nbytes, runs = hwjpeg.layout(np.full((n, 2), (h, w), dtype=np.uint32))
buffer = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, device="cuda")
views = run_views(buffer, offsets, runs, np.ones(n, dtype=bool))
step = int(offsets[1] - offsets[0])
new_w, new_h = resized_size(w, h, spec)
c = spec.crop
top, left = (new_h - c) // 2, (new_w - c) // 2
scale = torch.tensor([1 / (255 * s) for s in spec.std], device="cuda").view(1, 3, 1, 1)
shift = torch.tensor([-m / s for m, s in zip(spec.mean, spec.std)], device="cuda").view(1, 3, 1, 1)
out = torch.empty((n, *spec.shape), dtype=torch.float32, device="cuda")


def strided() -> torch.Tensor:
    return buffer.as_strided((n, 3, h, w), (step, 1, 3 * w, 3), int(offsets[0]))


TO_FLOAT = {
    "S": lambda: torch.stack(views).float(),
    "C": lambda: strided().to(torch.float32, memory_format=torch.contiguous_format),
    "L": lambda: strided().float(),
    "K": lambda: strided().contiguous().float(),
}


def resize(x: torch.Tensor) -> None:
    x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
    out.copy_(x[:, :, top:top + c, left:left + c])
    out.clamp_(0, 255).round_().mul_(scale).add_(shift)


def timed(fn) -> float:  # noqa: ANN001 - GPU ms of one call, between two events
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


res: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "batch": n, "size": [h, w],
             "reps": reps, "ms_per_batch": {}}
outputs = {}
with torch.inference_mode():
    for name, to_float in TO_FLOAT.items():
        for _ in range(3):  # warm up: kernels loaded, allocator settled
            resize(to_float())
        x = to_float()
        conv = [timed(to_float) for _ in range(reps)]
        interp = [timed(lambda: torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear",
                                                                antialias=True, align_corners=False))
                  for _ in range(reps)]
        whole = [timed(lambda: resize(to_float())) for _ in range(reps)]
        outputs[name] = out.clone()
        res["ms_per_batch"][name] = {"to_float": float(np.median(conv)), "interpolate": float(np.median(interp)),
                                     "whole": float(np.median(whole)), "float_strides": list(x.stride())}
        print(name, {k: round(v, 3) if isinstance(v, float) else v for k, v in res["ms_per_batch"][name].items()},
              flush=True)
res["max_difference_vs_S"] = {k: float((v - outputs["S"]).abs().max()) for k, v in outputs.items()}
print(res["max_difference_vs_S"])
(OUT / "probe-strided.json").write_text(json.dumps(res, indent=1))
