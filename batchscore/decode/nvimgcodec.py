"""nvImageCodec as a `library.GpuLibrary`: its hardware JPEG decoder and its CUDA decoder for what the hardware
one refuses or fails, side by side in one call through the C API (`hwjpeg`), into the `DeviceBuffers` in turn."""

from __future__ import annotations

import os

import numpy as np

from .buffers import DeviceBuffers
from .hwjpeg import STEPS, HwJpeg
from .library import Decoded
from .tensorops import TorchDevice


class NvImageCodec:
    """nvImageCodec's two decoders on one GPU: the hardware one, and the CUDA one (Huffman on CPU threads, the rest
    on the GPU) for progressive JPEGs and what the hardware one fails; None where both refuse (the CPU path is
    next). A step is kept only if it decodes the probe image on this GPU (not every GPU has a hardware decoder).
    What `decode` returns is valid until DeviceBuffers.SETS more calls."""

    keys = tuple(key for key, _ in STEPS)

    def __init__(self, device: int, threads: int) -> None:
        self.device = TorchDevice(device)
        self.native = HwJpeg(device, max(1, min(threads, (os.cpu_count() or 2) - 1)))
        self.buffers = DeviceBuffers(self.device.torch, self.device.device)

    @property
    def label(self) -> str:
        return f"nvImageCodec {self.native.lib.version} (C API)"

    @property
    def steps(self) -> list[str]:
        return [STEPS[k][1] for k in self.native.steps]

    @property
    def failed(self) -> dict[str, str]:
        return self.native.failed

    def close(self) -> None:
        self.native.close()

    def decode(self, data: list[bytes]) -> Decoded:
        stream = self.device.stream
        try:
            buffer, offsets, hw, step = self.native.decode_batch(data, lambda n: self.buffers.take(n, stream),
                                                                 stream.cuda_stream)
        except RuntimeError:  # the batch did not parse, or no decoder took it: the CPU path takes every image
            return Decoded(np.zeros((len(data), 2), np.int64), np.full(len(data), -1, np.int8))
        return Decoded(hw, step, buffer=buffer, offsets=offsets)

    def probe(self, data: bytes) -> None:
        """Keep the steps that each decode `data` (a 64×64 JPEG) twice in one call; RuntimeError when none does."""
        native = self.native
        for k in list(native.steps):
            others = [j for j in native.steps if j != k]
            native.steps = [k]  # this step alone
            with self.device.active():
                decoded = self.decode([data, data])
                self.device.stream.synchronize()
            native.steps = sorted([k, *others])
            if not (decoded.step == k).all() or decoded.hw.tolist() != [[64, 64]] * 2:
                native.drop(k, "did not decode a 64×64 JPEG")
        if not native.steps:
            raise RuntimeError("; ".join(f"{label}: {why}" for label, why in native.failed.items()))
