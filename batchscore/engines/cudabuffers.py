"""Page-locked host buffers and device buffers in two sets (pycuda), for engines that launch raw CUDA work.

Batch i is copied in on a copy stream into its own buffer set while batch i-1 still computes on the
compute stream; the compute stream waits for the copy's event, runs the engine, and copies the
(small) outputs back asynchronously. CUDA events time each batch's compute. Needs only pycuda and a
GPU, so it is tested on a GPU machine without TensorRT (tests/gpu/test_cudabuffers.py).

An input may also be a device array already (GPU decode hands over a torch CUDA tensor): anything with
`__cuda_array_interface__` is copied device to device into the set's buffer, with no host round trip.
Its producer's GPU work on it must be complete (a GPU-decoded batch leaves pipeline.batches only after it is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pycuda.driver as cuda

Shapes = dict[str, tuple[tuple[int, ...], np.dtype]]


class CudaContext:
    """The device's primary context made current on this thread: shared with TensorRT's runtime."""

    def __init__(self, index: int) -> None:
        cuda.init()
        self.device = cuda.Device(index)
        self.context = self.device.retain_primary_context()
        self.context.push()

    @property
    def name(self) -> str:
        return self.device.name()

    @property
    def compute_capability(self) -> str:
        return "{}.{}".format(*self.device.compute_capability())

    def close(self) -> None:
        self.context.pop()


@dataclass
class Slot:
    """One buffer set: pinned host and device memory for every input and output, plus its events."""

    host_in: dict[str, np.ndarray]
    dev_in: dict[str, cuda.DeviceAllocation]
    host_out: dict[str, np.ndarray]
    dev_out: dict[str, cuda.DeviceAllocation]
    copy_start: cuda.Event = field(default_factory=cuda.Event)
    copied: cuda.Event = field(default_factory=cuda.Event)
    start: cuda.Event = field(default_factory=cuda.Event)
    end: cuda.Event = field(default_factory=cuda.Event)
    done: cuda.Event = field(default_factory=cuda.Event)
    rows: int = 0
    pending: bool = False
    #: device arrays being copied in: kept alive until `collect`, so their memory is not freed before the copy ran
    sources: list[Any] = field(default_factory=list)

    def times_ms(self) -> tuple[float, float, float]:
        """Copy-in, compute and copy-out time of the last batch, from its events (after collect)."""
        return (self.copied.time_since(self.copy_start), self.end.time_since(self.start),
                self.done.time_since(self.end))


def _alloc(shapes: Shapes) -> tuple[dict[str, np.ndarray], dict[str, cuda.DeviceAllocation]]:
    host = {name: cuda.pagelocked_zeros(shape, dtype) for name, (shape, dtype) in shapes.items()}
    return host, {name: cuda.mem_alloc(array.nbytes) for name, array in host.items()}


def _device_source(name: str, array: Any, buffer: np.ndarray) -> tuple[int, int]:
    """Pointer and byte size of a device array (`__cuda_array_interface__`) that fits `buffer`'s rows.

    A device-to-device copy moves raw bytes, so it cannot cast or gather: dtype and trailing shape must
    equal the buffer's and the array must be C-contiguous, else ValueError.
    """
    iface = array.__cuda_array_interface__
    shape, dtype, strides = tuple(iface["shape"]), np.dtype(iface["typestr"]), iface.get("strides")
    if dtype != buffer.dtype or shape[1:] != buffer.shape[1:] or shape[0] > len(buffer):
        raise ValueError(f"input {name!r}: device array {dtype} {shape} does not fit the buffer "
                         f"{buffer.dtype} {buffer.shape} (same dtype and trailing shape, at most {len(buffer)} rows)")
    if strides is not None:  # None means C-contiguous; strides of length-1 axes do not matter
        step = dtype.itemsize
        for n, stride in zip(reversed(shape), reversed(strides)):
            if n > 1 and stride != step:
                raise ValueError(f"input {name!r}: device array is not C-contiguous (strides {tuple(strides)}); "
                                 "make it contiguous before submitting")
            step *= n
    return int(iface["data"][0]), int(np.prod(shape)) * dtype.itemsize


class BufferRing:
    """`slots` buffer sets sized for the largest batch; the batch axis is the first of every tensor.

    `submit` stages a batch and enqueues copy-in, `launch(slot, stream)` and copy-out without waiting;
    `collect` waits for that batch and returns its outputs. At most `slots` batches are in flight.
    Each input is a host numpy array (staged through pinned memory) or a device array (copied d2d).
    """

    def __init__(self, inputs: Shapes, outputs: Shapes, slots: int = 2) -> None:
        self.copy_stream = cuda.Stream()
        self.compute_stream = cuda.Stream()
        self.slots = []
        for _ in range(slots):
            host_in, dev_in = _alloc(inputs)
            host_out, dev_out = _alloc(outputs)
            self.slots.append(Slot(host_in, dev_in, host_out, dev_out))
        self.next = 0

    def submit(self, arrays: dict[str, Any], launch: Callable[[Slot, cuda.Stream], None]) -> Slot:
        """Stage `arrays` (same batch size each; host or device arrays) and enqueue copy-in → launch → copy-out."""
        slot = self.slots[self.next]
        if slot.pending:
            raise RuntimeError("all buffer sets are in flight: collect() a batch before submitting another")
        rows = {len(a) for a in arrays.values()}
        if len(rows) != 1:
            raise ValueError(f"inputs of different batch sizes: {sorted(rows)}")
        # checked before anything is enqueued, so a refused batch leaves the ring as it was
        on_device = {name: _device_source(name, a, slot.host_in[name]) for name, a in arrays.items()
                     if hasattr(a, "__cuda_array_interface__")}
        self.next = (self.next + 1) % len(self.slots)
        slot.rows = rows.pop()
        slot.sources = [arrays[name] for name in on_device]
        self.copy_stream.wait_for_event(slot.done)  # the compute that last read this set is over
        slot.copy_start.record(self.copy_stream)
        for name, array in arrays.items():
            if name in on_device:
                cuda.memcpy_dtod_async(slot.dev_in[name], *on_device[name], self.copy_stream)
            else:
                np.copyto(slot.host_in[name][:slot.rows], array, casting="same_kind")
                cuda.memcpy_htod_async(slot.dev_in[name], slot.host_in[name][:slot.rows], self.copy_stream)
        slot.copied.record(self.copy_stream)
        self.compute_stream.wait_for_event(slot.copied)
        slot.start.record(self.compute_stream)
        launch(slot, self.compute_stream)
        slot.end.record(self.compute_stream)
        for name, dev in slot.dev_out.items():
            cuda.memcpy_dtoh_async(slot.host_out[name][:slot.rows], dev, self.compute_stream)
        slot.done.record(self.compute_stream)
        slot.pending = True
        return slot

    def collect(self, slot: Slot) -> dict[str, np.ndarray]:
        """Wait for `slot`'s batch; its outputs (copies: the set is reused) by name."""
        slot.done.synchronize()
        slot.pending = False
        slot.sources = []
        return {name: host[:slot.rows].copy() for name, host in slot.host_out.items()}

    def close(self) -> None:
        """Wait for work in flight, then free device memory (host memory goes with the arrays)."""
        self.compute_stream.synchronize()
        self.copy_stream.synchronize()
        for slot in self.slots:
            for dev in (*slot.dev_in.values(), *slot.dev_out.values()):
                dev.free()
        self.slots = []
