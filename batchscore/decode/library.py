"""The GPU decode libraries: what the GPU decoder asks of one (`GpuLibrary`, `DeviceOps`) and what a decode call
hands over (`Decoded`).

Libraries (`gpu_decoder`), best first:
- "nvimgcodec": nvImageCodec's hardware JPEG decoder (data-centre GPUs that have one: no SM time taken from the
  engine) and its CUDA decoder for what the hardware one refuses (progressive JPEGs) or fails, side by side, a
  batch a call through its C API (`hwjpeg`);
- "torchvision": torchvision's nvJPEG (the CUDA decoder), the fallback where the C API cannot run.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..preprocess import Preprocess


class GpuDecodeError(RuntimeError):
    """decode = "gpu" and no GPU decode library works on the rank's GPU; the message says what to do."""


@dataclass
class Decoded:
    """A batch's images as a GPU library decoded them, on the device, RGB uint8, per input in order.

    Either one `buffer` holding every image HWC at its byte `offsets` (the C API's hand-over: same sizes side by
    side, so a batched resize can read them in place), or a CHW tensor per input in `images`. hw: (n, 2)
    height and width (0 where the headers did not parse); step: the index into the library's `keys` of the
    step that decoded each input, -1 where none did (the CPU path takes it)."""

    hw: np.ndarray
    step: np.ndarray
    buffer: Any = None
    offsets: np.ndarray | None = None
    images: list | None = None

    @property
    def ok(self) -> np.ndarray:
        """True per input that a step decoded."""
        return self.step >= 0


class Waitable(Protocol):
    def synchronize(self) -> None: ...


class DeviceOps(Protocol):
    """The tensor side of a GPU library: output rows on its device, filled in its stream (`tensorops.TorchDevice`
    on a GPU)."""

    def active(self) -> AbstractContextManager[object]:
        """The device and stream current, for the decoder thread's work on a batch."""
        ...

    def empty(self, n: int, shape: tuple[int, ...]) -> Any:
        """n uninitialised float32 rows of `shape`."""
        ...

    def fill(self, out: Any, rows: np.ndarray, decoded: Decoded, spec: Preprocess) -> None:
        """Resize, crop and normalise the decoded inputs into `out[rows[i]]` (those decoded)."""
        ...

    def put(self, out: Any, rows: np.ndarray, host: np.ndarray) -> None:
        """Copy host rows (the CPU path's) into `out[rows]`."""
        ...

    def select(self, out: Any, good: np.ndarray) -> Any:
        """The rows of `out` where `good` (all of it when every one is)."""
        ...

    def record(self) -> Waitable:
        """An event after the work queued so far, which the consumer waits for."""
        ...


class GpuLibrary(Protocol):
    """A GPU decode library on one GPU: decode a batch's JPEG bytes in one call, chained steps inside (each takes
    what the one before rejected). label: for the log; keys: each step's count key ("gpu_hw", "gpu"); steps: the
    labels of the steps that work; failed: why a step is off, by label."""

    label: str
    keys: Sequence[str]
    steps: list[str]
    failed: dict[str, str]
    device: DeviceOps

    def decode(self, data: list[bytes]) -> Decoded:
        """Decode `data` on the device, queued on its stream; the result stays valid for the next two calls."""
        ...

    def probe(self, data: bytes) -> None:
        """Keep only the steps that decode `data` (a small valid JPEG); RuntimeError when none does."""
        ...

    def close(self) -> None:
        ...
