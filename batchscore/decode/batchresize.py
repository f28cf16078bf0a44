"""Resize, centre-crop and normalise a whole batch of decoded images of different sizes in one kernel launch.

The images are RGB uint8 on one GPU, each at a byte offset from a base tensor with its own strides (one
buffer the C API decoded into, HWC; or a library's separate CHW images). Each output pixel is
the antialiased bilinear resize torch's `interpolate(..., antialias=True)` computes (Pillow's filter),
evaluated only inside the crop, then rounded to the uint8 grid and normalised.

Why: on archives of mixed sizes almost every image is its own size, and resizing per size cost the decoder
thread several torch calls per image, each of which lets go of the interpreter lock and waits to take it back;
this costs three calls per batch whatever the sizes.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from ..preprocess import Preprocess

#: per image: byte offset, row/pixel/channel strides, height, width, resized height and width, crop top and left,
#: output row
FIELDS = 11


@triton.jit
def _weight(x):
    """The bilinear (triangle) filter."""
    x = tl.abs(x)
    return tl.where(x < 1.0, 1.0 - x, 0.0)


@triton.jit
def _resize_crop_normalise(src, meta, out, scale, shift, crop, TAPS_Y: tl.constexpr, TAPS_X: tl.constexpr,
                           BGR: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    i = tl.program_id(1)  # the output row
    m = meta + b * 11
    offset = tl.load(m)
    stride = tl.load(m + 1)
    pixel = tl.load(m + 2)
    channel = tl.load(m + 3)
    h = tl.load(m + 4)
    w = tl.load(m + 5)
    new_h = tl.load(m + 6)
    new_w = tl.load(m + 7)
    top = tl.load(m + 8)
    left = tl.load(m + 9)
    row = tl.load(m + 10)

    # Rows of the source under output row i (torch's _compute_indices_min_size_weights_aa).
    sy = h.to(tl.float32) / new_h.to(tl.float32)
    support_y = tl.maximum(sy, 1.0)
    cy = sy * ((i + top).to(tl.float32) + 0.5)
    ymin = tl.maximum((cy - support_y + 0.5).to(tl.int64), 0)
    ysize = tl.minimum((cy + support_y + 0.5).to(tl.int64), h) - ymin

    j = tl.arange(0, BLOCK)
    inside = j < crop
    sx = w.to(tl.float32) / new_w.to(tl.float32)
    support_x = tl.maximum(sx, 1.0)
    cx = sx * ((j + left).to(tl.float32) + 0.5)
    xmin = tl.maximum((cx - support_x + 0.5).to(tl.int64), 0)
    xsize = tl.minimum((cx + support_x + 0.5).to(tl.int64), w) - xmin

    red = tl.zeros((BLOCK,), dtype=tl.float32)
    green = tl.zeros((BLOCK,), dtype=tl.float32)
    blue = tl.zeros((BLOCK,), dtype=tl.float32)
    total_x = tl.zeros((BLOCK,), dtype=tl.float32)
    for kx in range(0, TAPS_X):
        total_x += tl.where(kx < xsize, _weight(((kx + xmin).to(tl.float32) - cx + 0.5) / support_x), 0.0)
    total_y = 0.0
    for ky in range(0, TAPS_Y):
        wy = tl.where(ky < ysize, _weight((ky + ymin - cy + 0.5) / support_y), 0.0)
        total_y += wy
        line = src + offset + (ymin + ky) * stride
        r = tl.zeros((BLOCK,), dtype=tl.float32)
        g = tl.zeros((BLOCK,), dtype=tl.float32)
        bl = tl.zeros((BLOCK,), dtype=tl.float32)
        for kx in range(0, TAPS_X):
            tap = inside & (kx < xsize) & (ky < ysize)
            wx = tl.where(kx < xsize, _weight(((kx + xmin).to(tl.float32) - cx + 0.5) / support_x), 0.0)
            p = line + (xmin + kx) * pixel
            r += wx * tl.load(p, mask=tap, other=0).to(tl.float32)
            g += wx * tl.load(p + channel, mask=tap, other=0).to(tl.float32)
            bl += wx * tl.load(p + 2 * channel, mask=tap, other=0).to(tl.float32)
        red += wy * r
        green += wy * g
        blue += wy * bl
    norm = 1.0 / (total_y * tl.where(inside, total_x, 1.0))
    red = tl.floor(tl.minimum(tl.maximum(red * norm, 0.0), 255.0) + 0.5)
    green = tl.floor(tl.minimum(tl.maximum(green * norm, 0.0), 255.0) + 0.5)
    blue = tl.floor(tl.minimum(tl.maximum(blue * norm, 0.0), 255.0) + 0.5)
    if BGR:
        red, blue = blue, red
    plane = crop * crop
    base = out + row * 3 * plane + i * crop + j
    tl.store(base, red * tl.load(scale) + tl.load(shift), mask=inside)
    tl.store(base + plane, green * tl.load(scale + 1) + tl.load(shift + 1), mask=inside)
    tl.store(base + 2 * plane, blue * tl.load(scale + 2) + tl.load(shift + 2), mask=inside)


def plan(hw: np.ndarray, offsets: np.ndarray, strides: np.ndarray, rows: np.ndarray, resize: int,
         crop: int) -> tuple[np.ndarray, int, int]:
    """The kernel's per-image table (FIELDS columns) for images of (height, width) `hw` at byte `offsets` with
    (row, pixel, channel) `strides` (n, 3), written to output `rows`; and the filter taps down and across that
    cover every image of the batch, rounded up to a multiple of 4 so that few kernel variants are compiled."""
    h, w = hw[:, 0].astype(np.int64), hw[:, 1].astype(np.int64)
    scale = resize / np.minimum(h, w)
    new_w = np.maximum(resize, np.round(w * scale).astype(np.int64))
    new_h = np.maximum(resize, np.round(h * scale).astype(np.int64))
    meta = np.column_stack([offsets, strides, h, w, new_h, new_w, (new_h - crop) // 2, (new_w - crop) // 2, rows])
    taps = lambda src, dst: -(-(int(np.ceil(2 * np.maximum(src / dst, 1.0)).max()) + 2) // 4) * 4  # noqa: E731
    return np.ascontiguousarray(meta, dtype=np.int64), taps(h, new_h), taps(w, new_w)


def resize_crop_normalise(out: torch.Tensor, base: torch.Tensor, hw: np.ndarray, offsets: np.ndarray,
                          strides: np.ndarray, rows: np.ndarray, spec: Preprocess,
                          affine: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Images of (height, width) `hw`, at byte `offsets` from uint8 tensor `base`'s first byte with (row, pixel,
    channel) `strides` in bytes, into rows `rows` of `out` (N, 3, crop, crop), queued on the current stream.
    affine: the normalisation's (scale, shift) per channel on `out`'s device."""
    if not len(rows):
        return
    meta, taps_y, taps_x = plan(hw, offsets, strides, rows, spec.resize, spec.crop)
    table = torch.from_numpy(meta)
    if out.is_cuda:  # copied without a host sync (Triton's interpreter runs the kernel on CPU tensors)
        table = table.pin_memory().to(out.device, non_blocking=True)
    scale, shift = affine
    _resize_crop_normalise[(len(rows), spec.crop)](base, table, out, scale, shift, spec.crop, taps_y, taps_x,
                                                   BGR=spec.channel_order == "BGR",
                                                   BLOCK=triton.next_power_of_2(spec.crop))
