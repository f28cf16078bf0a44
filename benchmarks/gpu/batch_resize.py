"""The GPU decoder's resize, crop and normalise for a batch of mixed sizes: one kernel launch against a loop per image.

Images of distinct random sizes (shorter side 300-640, longer up to 1,000, as benchmarks/photos.py cuts them)
lie in one device buffer, as the hardware decoder leaves them. Both ways produce the batch's normalised NCHW
rows; the table gives images/s of each (GPU synchronized around a run) and how far apart they are.

    python benchmarks/gpu/batch_resize.py --out $OUT      # prints a table, writes batch_resize.json
"""

from __future__ import annotations

import time

import numpy as np
from common import arg_parser, write_results

from batchscore.decode.batchresize import resize_crop_normalise
from batchscore.decode.tensorops import affine
from batchscore.preprocess import Preprocess


def per_image(buffer, hw: np.ndarray, offsets: np.ndarray, spec: Preprocess):  # noqa: ANN001, ANN201 - torch
    """The per-image torch loop: antialiased resize, centre crop, rounding, normalisation, image by image."""
    import torch

    mean = torch.tensor(spec.mean, device=buffer.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=buffer.device).view(1, 3, 1, 1)
    rows = []
    for (h, w), offset in zip(hw.tolist(), offsets.tolist()):
        x = buffer[offset:offset + h * w * 3].view(1, h, w, 3).permute(0, 3, 1, 2).float()
        scale = spec.resize / min(h, w)
        new_w, new_h = max(spec.resize, round(w * scale)), max(spec.resize, round(h * scale))
        x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True)
        top, left = (new_h - spec.crop) // 2, (new_w - spec.crop) // 2
        x = x[:, :, top:top + spec.crop, left:left + spec.crop].clamp(0, 255).round()
        rows.append((x / 255 - mean) / std)
    return torch.cat(rows)


def timed(fn, reps: int) -> float:  # noqa: ANN001
    """Seconds a call of `fn`, the GPU synchronized around `reps` calls after one warm-up call."""
    import torch

    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps


def main() -> None:
    import torch

    ap = arg_parser(__doc__, "/tmp/batchscore-batch-resize")
    ap.add_argument("--images", type=int, default=256, help="images a batch, each of its own size")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    short = rng.integers(300, 641, args.images)
    long = np.minimum(1000, (short * rng.uniform(1.0, 1.8, args.images)).astype(np.int64))
    tall = rng.random(args.images) < 0.3
    hw = np.stack([np.where(tall, long, short), np.where(tall, short, long)], axis=1)
    nbytes = hw[:, 0] * hw[:, 1] * 3
    offsets = np.concatenate([[0], np.cumsum(nbytes)[:-1]])
    # smooth random content (a running sum of noise), closer to photographs than white noise
    noise = torch.randint(-12, 13, (int(nbytes.sum()),), device="cuda", dtype=torch.int16)
    buffer = (noise.cumsum(0, dtype=torch.int32) % 512 - 256).abs().clamp(0, 255).to(torch.uint8)
    spec = Preprocess()
    out = torch.empty((args.images, *spec.shape), device="cuda")
    rows = np.arange(args.images)
    strides = np.column_stack([hw[:, 1] * 3, np.full(len(hw), 3), np.ones(len(hw), np.int64)])
    scale_shift = affine(out.device, spec.mean, spec.std)
    one = lambda: resize_crop_normalise(out, buffer, hw, offsets, strides, rows, spec, scale_shift)  # noqa: E731
    loop = lambda: per_image(buffer, hw, offsets, spec)  # noqa: E731
    kernel_s, loop_s = timed(one, args.reps), timed(loop, args.reps)
    one()
    diff = (out - loop()).abs()
    level = 1 / (255 * min(spec.std))
    write_results(args.out, "batch_resize", {
        "gpu": torch.cuda.get_device_name(), "images": args.images, "sizes": len({tuple(s) for s in hw.tolist()}),
        "one_launch_images_per_s": round(args.images / kernel_s), "per_image_images_per_s": round(args.images / loop_s),
        "speedup": round(loop_s / kernel_s, 2), "max_diff_levels": round(diff.max().item() / level, 3),
        "mean_diff_levels": round(diff.mean().item() / level, 5)})


if __name__ == "__main__":
    main()
