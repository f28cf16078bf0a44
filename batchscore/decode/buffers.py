"""Device buffers the C API decodes batches into, taken in turn and reused, so nothing is allocated per batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hwjpeg import ALIGN

if TYPE_CHECKING:
    import torch


class DeviceBuffers:
    """`SETS` device buffers taken in turn: a buffer is taken again only once nothing reads it. Taking the next one
    records an event on the stream after every kernel that reads the last one (the resize), and a buffer waits
    for its event before it is reused."""

    SETS = 3  # batches in flight (decoding, resize queued, and one spare) before a buffer comes round again

    def __init__(self, torch: object, device: torch.device, budget: int = 1 << 30) -> None:
        self.torch, self.device, self.budget = torch, device, budget
        self.buffers: list[torch.Tensor | None] = [None] * self.SETS
        self.free: list[torch.cuda.Event | None] = [None] * self.SETS
        self.turn = -1

    def next_turn(self, stream: torch.cuda.Stream) -> int:
        """The next buffer's index, once nothing reads that buffer."""
        if self.turn >= 0:  # every reader of the last buffer is queued on `stream` by now
            self.free[self.turn] = self.torch.cuda.Event()
            self.free[self.turn].record(stream)
        self.turn = (self.turn + 1) % self.SETS
        if self.free[self.turn] is not None:
            self.free[self.turn].synchronize()  # long done, normally: SETS - 1 batches ago
        return self.turn

    def take(self, nbytes: int, stream: torch.cuda.Stream) -> torch.Tensor:
        """The next buffer, at least `nbytes` long: grown by a quarter when short; one over `budget` bytes (very
        large photos) shrinks again once the batches need less than half of it."""
        turn = self.next_turn(stream)
        buffer = self.buffers[turn]
        if buffer is None or buffer.numel() < nbytes or buffer.numel() > max(self.budget, 2 * nbytes):
            buffer = self.buffers[turn] = None  # the old one is freed (once its last view is) before the new one
            buffer = self.buffers[turn] = self.torch.empty(max(nbytes, ALIGN) * 5 // 4, dtype=self.torch.uint8,
                                                           device=self.device)
        return buffer
