"""The GPU decoder's tensor steps: a decoded batch resized, centre-cropped and normalised into its rows of the
batch's float32 NCHW tensor, on the device. They follow batchscore.preprocess step for step (shorter side to
`resize` with antialiased bilinear, centre crop, /255, mean/std, channel order); pixels differ slightly, since the
IDCT, chroma upsampling and resize are other implementations (docs/guide/gpus.md gives the measured difference).
Pure tensor code, so `resize_crop_normalise` runs (and is tested) on the CPU too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from ..preprocess import Preprocess
from .library import Decoded

if TYPE_CHECKING:
    import torch


def resized_size(width: int, height: int, spec: Preprocess) -> tuple[int, int]:
    """(width, height) after scaling the shorter side to spec.resize, rounded as the CPU path rounds."""
    scale = spec.resize / min(width, height)
    return max(spec.resize, round(width * scale)), max(spec.resize, round(height * scale))


def same_size(decoded: Decoded, inputs: np.ndarray, h: int, w: int) -> torch.Tensor:
    """The decoded `inputs` (all h×w) as one uint8 NCHW tensor: a strided view of the C API's buffer where they
    sit evenly spaced in it (as `hwjpeg.layout` puts them), else a stack (a copy).

    Why: stacking the C API's images copied every decoded pixel once more before the conversion to float
    (docs/dev/decisions/0008); the conversion reads the view instead."""
    import torch

    if decoded.buffer is None:
        return torch.stack([decoded.images[i] for i in inputs.tolist()])
    offsets = decoded.offsets[inputs]
    steps = np.diff(offsets)
    if len(steps) and (steps != steps[0]).any():  # a gap: an image of this size in between was not decoded
        return torch.stack([decoded.buffer.as_strided((3, h, w), (1, 3 * w, 3), int(o)) for o in offsets.tolist()])
    step = int(steps[0]) if len(steps) else h * w * 3
    return decoded.buffer.as_strided((len(inputs), 3, h, w), (step, 1, 3 * w, 3), int(offsets[0]))


def resize_crop_normalise(out: torch.Tensor, rows: np.ndarray, decoded: Decoded, spec: Preprocess) -> None:
    """The decoded inputs (those `decoded.ok`) into `out[rows[i]]`, on `out`'s device: the CPU path's steps.
    Other rows are left for the caller to fill.

    The one entry point for a whole decoded batch. Why it is shaped so: archives hold many image sizes (each
    sample image has its own), and the resize runs once per distinct size, so that per-size work is kept to
    three kernels (to float, resize, crop into the rows) and no host sync; rounding, channel order and
    normalisation run once over the batch."""
    import torch

    ok = decoded.ok
    if not ok.any():
        return
    inputs = np.flatnonzero(ok)
    sizes, group = np.unique(decoded.hw[inputs], axis=0, return_inverse=True)
    group = group.reshape(-1)
    c = spec.crop
    for s, (h, w) in enumerate(sizes.tolist()):
        same = inputs[group == s]
        new_w, new_h = resized_size(w, h, spec)
        x = same_size(decoded, same, h, w).to(torch.float32, memory_format=torch.contiguous_format)
        x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True,
                                            align_corners=False)
        top, left = (new_h - c) // 2, (new_w - c) // 2
        x = x[:, :, top:top + c, left:left + c]
        target = rows[same]
        if len(target) == 1:
            out[int(target[0])].copy_(x[0])
        elif (np.diff(target) == 1).all():  # rows in order (a batch of one size): no index
            out[int(target[0]):int(target[0]) + len(target)].copy_(x)
        else:
            out.index_copy_(0, _to_device(torch.from_numpy(target), out.device), x)
    scale, shift = affine(out.device, tuple(spec.mean), tuple(spec.std))
    index = None if len(inputs) == len(out) else _to_device(torch.from_numpy(rows[inputs]), out.device)
    part = out if index is None else out.index_select(0, index)
    part.clamp_(0, 255).round_()  # Pillow's uint8 result
    if spec.channel_order == "BGR":
        part = part.flip(1)
    part.mul_(scale).add_(shift)
    if index is not None:
        out.index_copy_(0, index, part)
    elif part is not out:
        out.copy_(part)


@functools.lru_cache(maxsize=16)
def affine(device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) from 0-255 values to normalised ones, made on `device` once.

    Why: each torch call of the decoder thread lets go of the interpreter lock and waits to take it back, and
    these were eight calls a batch (docs/dev/decisions/0003). Made synchronously, so the decoder's stream does not
    read them before they are there."""
    import torch

    scale = torch.tensor([1 / (255 * s) for s in std]).view(1, 3, 1, 1).to(device)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)]).view(1, 3, 1, 1).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return scale, shift


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on `device`, copied without a host sync (through pinned memory on a GPU)."""
    return tensor.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else tensor


def _one_launch() -> Callable | None:
    """`batchresize.resize_crop_normalise` (the whole batch in one kernel launch, docs/dev/decisions/0012) where
    Triton is installed, as it is with torch's CUDA builds; else None, and the per-size loop runs."""
    try:
        from .batchresize import resize_crop_normalise as batched
    except ImportError:
        return None
    return batched


class TorchDevice:
    """`library.DeviceOps` with torch on GPU `index`, the decoder's work queued on a CUDA stream of its own."""

    def __init__(self, index: int) -> None:
        import torch

        self.torch, self.device = torch, torch.device("cuda", index)
        self.stream = torch.cuda.Stream(self.device)
        self.batched = _one_launch()

    @contextmanager
    def active(self) -> Iterator[None]:
        torch = self.torch
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream), torch.inference_mode():
            yield

    def empty(self, n: int, shape: tuple[int, ...]) -> torch.Tensor:
        return self.torch.empty((n, *shape), dtype=self.torch.float32, device=self.device)

    def fill(self, out: torch.Tensor, rows: np.ndarray, decoded: Decoded, spec: Preprocess) -> None:
        if self.batched is None:
            resize_crop_normalise(out, rows, decoded, spec)
            return
        inputs = np.flatnonzero(decoded.ok)
        if not len(inputs):
            return
        hw = decoded.hw[inputs]
        if decoded.buffer is not None:  # HWC images in one buffer
            base, offsets = decoded.buffer, decoded.offsets[inputs]
            strides = np.column_stack([hw[:, 1] * 3, np.full(len(inputs), 3), np.ones(len(inputs), np.int64)])
        else:  # a tensor per image, CHW with strides of its own
            images = [decoded.images[i] for i in inputs.tolist()]
            base = images[0]
            offsets = np.array([image.data_ptr() - base.data_ptr() for image in images], dtype=np.int64)
            strides = np.array([(image.stride(1), image.stride(2), image.stride(0)) for image in images],
                               dtype=np.int64)
        self.batched(out, base, hw, offsets, strides, rows[inputs], spec,
                     affine(out.device, tuple(spec.mean), tuple(spec.std)))

    def put(self, out: torch.Tensor, rows: np.ndarray, host: np.ndarray) -> None:
        torch = self.torch
        out.index_copy_(0, _to_device(torch.from_numpy(rows), self.device),
                        torch.from_numpy(np.ascontiguousarray(host)).to(self.device))

    def select(self, out: torch.Tensor, good: np.ndarray) -> torch.Tensor:
        return out if good.all() else out[_to_device(self.torch.from_numpy(np.flatnonzero(good)), self.device)]

    def record(self) -> torch.cuda.Event:
        event = self.torch.cuda.Event()
        event.record(self.stream)
        return event
