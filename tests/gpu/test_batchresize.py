"""The one-launch resize, crop and normalise (decode/batchresize.py) on a real GPU against the per-size torch
loop it replaces: images of many sizes (upscaled, downscaled, extreme aspect, exactly the resize size) in one
buffer as the C API leaves them, and as separate CHW tensors as torchvision's nvJPEG hands them over, written
into scattered rows of a batch. Skips without CUDA, torch or Triton."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")

from batchscore.decode.library import Decoded  # noqa: E402
from batchscore.decode.tensorops import TorchDevice, resize_crop_normalise  # noqa: E402
from batchscore.preprocess import Preprocess  # noqa: E402

SPECS = [Preprocess(), Preprocess(resize=160, crop=128, channel_order="BGR", mean=(0.4, 0.45, 0.5),
                                  std=(0.2, 0.25, 0.3))]
SIZES = [(256, 256), (224, 300), (100, 150), (375, 500), (640, 427), (999, 1000), (20, 2000), (3000, 40),
         (257, 1023), (481, 321)]


def photo_like(h: int, w: int, seed: int) -> torch.Tensor:
    """An HWC uint8 image with smooth gradients and edges, on the GPU."""
    g = torch.Generator("cuda").manual_seed(seed)
    y = torch.linspace(0, 1, h, device="cuda").view(h, 1, 1)
    x = torch.linspace(0, 1, w, device="cuda").view(1, w, 1)
    phase = torch.rand(1, 1, 3, device="cuda", generator=g) * 6
    image = 127 + 100 * torch.sin(9 * x + 5 * y + phase) + 20 * torch.randn(h, w, 3, device="cuda", generator=g)
    return image.clamp(0, 255).to(torch.uint8)


def batch_rows(n: int) -> tuple[np.ndarray, int]:
    """Rows of a batch of n + 3 for n images, out of order, with three rows left to others."""
    return np.random.default_rng(0).permutation(n + 3)[:n], n + 3


@pytest.mark.parametrize("spec", SPECS, ids=["default", "bgr-160-128"])
def test_one_launch_matches_the_per_size_loop_on_one_buffer(spec: Preprocess) -> None:
    images = [photo_like(h, w, i) for i, (h, w) in enumerate(SIZES)]
    images.append(images[3])  # a size twice
    hw = np.array([image.shape[:2] for image in images], dtype=np.int64)
    nbytes = -(-hw.prod(axis=1) * 3 // 256) * 256
    offsets = np.concatenate([[0], np.cumsum(nbytes)[:-1]])
    buffer = torch.zeros(int(nbytes.sum()), dtype=torch.uint8, device="cuda")
    for image, offset in zip(images, offsets.tolist()):
        buffer[offset:offset + image.numel()] = image.reshape(-1)
    step = np.zeros(len(images), dtype=np.int8)
    step[5] = -1  # not decoded: its row stays the caller's
    decoded = Decoded(hw, step, buffer=buffer, offsets=offsets)
    rows, n = batch_rows(len(images))
    compare(decoded, rows, n, spec)


def test_one_launch_reads_separate_chw_images_with_their_own_strides() -> None:
    spec = Preprocess()
    images = [photo_like(h, w, i).permute(2, 0, 1).contiguous() for i, (h, w) in enumerate(SIZES)]
    images[1] = photo_like(*SIZES[1], 1).permute(2, 0, 1)  # a CHW view of an HWC image: other strides
    hw = np.array([image.shape[1:] for image in images], dtype=np.int64)
    decoded = Decoded(hw, np.zeros(len(images), dtype=np.int8), images=images)
    rows, n = batch_rows(len(images))
    compare(decoded, rows, n, spec)


def compare(decoded: Decoded, rows: np.ndarray, n: int, spec: Preprocess) -> None:
    """TorchDevice.fill (the kernel) against `resize_crop_normalise` (the per-size loop), within one 8-bit
    step; rows of inputs not decoded, and rows no input goes to, untouched."""
    device = TorchDevice(0)
    assert device.batched is not None  # Triton is installed: the kernel runs
    with device.active():
        got = torch.full((n, *spec.shape), float("nan"), device="cuda")
        device.fill(got, rows, decoded, spec)
        want = torch.full((n, *spec.shape), float("nan"), device="cuda")
        resize_crop_normalise(want, rows, decoded, spec)
        device.stream.synchronize()
    filled = rows[decoded.ok]
    untouched = np.setdiff1d(np.arange(n), filled)
    assert torch.isnan(got[untouched]).all() and torch.isnan(want[untouched]).all()
    diff = (got[filled] - want[filled]).abs()
    level = 1 / (255 * min(spec.std))  # one 8-bit step in normalised units
    assert diff.max().item() <= 1.05 * level
    assert diff.mean().item() < 0.01 * level
