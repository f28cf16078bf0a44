"""torchvision's nvJPEG as a `library.GpuLibrary`: the fallback where nvImageCodec's C API cannot run.

Why this fallback (and not nvImageCodec's Python API): one batched call with no buffers of its own to manage,
on any GPU that torch drives, and it is installed wherever the torch backend is.
"""

from __future__ import annotations

import numpy as np

from .library import Decoded
from .tensorops import TorchDevice


class TorchvisionNvjpeg:
    """torchvision's nvJPEG (its CUDA decoder): one batched call, one image at a time when that call fails."""

    keys = ("gpu",)

    def __init__(self, device: int) -> None:
        import torchvision
        from torchvision.io import ImageReadMode, decode_jpeg

        self.device = TorchDevice(device)
        self.decode_jpeg, self.rgb = decode_jpeg, ImageReadMode.RGB
        self.label = f"nvJPEG (torchvision {torchvision.__version__})"
        self.steps, self.failed = ["CUDA"], {}

    def decode(self, data: list[bytes]) -> Decoded:
        torch = self.device.torch
        encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in data]
        images: list = []
        if encoded:
            try:
                images = self.decode_jpeg(encoded, mode=self.rgb, device=self.device.device)
            except (RuntimeError, ValueError):  # one bad image fails the whole call: decode them one by one
                images = [self._one(e) for e in encoded]
        images = [image if image is not None and image.shape[0] == 3 else None for image in images]
        hw = np.array([image.shape[1:] if image is not None else (0, 0) for image in images],
                      dtype=np.int64).reshape(-1, 2)
        step = np.array([0 if image is not None else -1 for image in images], dtype=np.int8)
        return Decoded(hw, step, images=images)

    def _one(self, encoded: object) -> object:
        try:
            return self.decode_jpeg(encoded, mode=self.rgb, device=self.device.device)
        except (RuntimeError, ValueError):
            return None

    def probe(self, data: bytes) -> None:
        with self.device.active():
            decoded = self.decode([data, data])
        if not decoded.ok.all():
            raise RuntimeError("nvJPEG rejected a valid JPEG")

    def close(self) -> None:
        """Nothing to let go of: torchvision's decoder is global."""
