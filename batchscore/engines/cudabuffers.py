"""Page-locked host buffers and device buffers in two sets (pycuda), for engines that launch raw CUDA work.

Batch i is copied in on a copy stream into its own buffer set while batch i-1 still computes on the
compute stream; the compute stream waits for the copy's event, runs the engine, and copies the
(small) outputs back asynchronously. CUDA events time each batch's compute. Needs only pycuda and a
GPU, so it is tested on a GPU machine without TensorRT (tests/gpu/test_cudabuffers.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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

    def times_ms(self) -> tuple[float, float, float]:
        """Copy-in, compute and copy-out time of the last batch, from its events (after collect)."""
        return (self.copied.time_since(self.copy_start), self.end.time_since(self.start),
                self.done.time_since(self.end))


def _alloc(shapes: Shapes) -> tuple[dict[str, np.ndarray], dict[str, cuda.DeviceAllocation]]:
    host = {name: cuda.pagelocked_zeros(shape, dtype) for name, (shape, dtype) in shapes.items()}
    return host, {name: cuda.mem_alloc(array.nbytes) for name, array in host.items()}


class BufferRing:
    """`slots` buffer sets sized for the largest batch; the batch axis is the first of every tensor.

    `submit` stages a batch and enqueues copy-in, `launch(slot, stream)` and copy-out without waiting;
    `collect` waits for that batch and returns its outputs. At most `slots` batches are in flight.
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

    def submit(self, arrays: dict[str, np.ndarray], launch: Callable[[Slot, cuda.Stream], None]) -> Slot:
        """Stage `arrays` (same batch size each) and enqueue copy-in → launch → copy-out."""
        slot = self.slots[self.next]
        if slot.pending:
            raise RuntimeError("all buffer sets are in flight: collect() a batch before submitting another")
        self.next = (self.next + 1) % len(self.slots)
        rows = {len(a) for a in arrays.values()}
        if len(rows) != 1:
            raise ValueError(f"inputs of different batch sizes: {sorted(rows)}")
        slot.rows = rows.pop()
        self.copy_stream.wait_for_event(slot.done)  # the compute that last read this set is over
        slot.copy_start.record(self.copy_stream)
        for name, array in arrays.items():
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
        return {name: host[:slot.rows].copy() for name, host in slot.host_out.items()}

    def close(self) -> None:
        """Wait for work in flight, then free device memory (host memory goes with the arrays)."""
        self.compute_stream.synchronize()
        self.copy_stream.synchronize()
        for slot in self.slots:
            for dev in (*slot.dev_in.values(), *slot.dev_out.values()):
                dev.free()
        self.slots = []
