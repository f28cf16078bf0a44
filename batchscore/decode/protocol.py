"""What every decoder hands over and the one interface `pipeline.batches` drives them through."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..sources import Item

#: one image decoded on the CPU: (error or "", read seconds, decode seconds)
Row = tuple[str, float, float]


@dataclass
class Batch:
    """One batch: keys in order, the tensors of the good ones, an error text per key ("" = ok).

    tensors: a float32 NCHW host array, or a torch tensor on the GPU when decoded there.
    read/decode seconds are summed over the images (they ran in parallel workers); wait is how
    long the consumer blocked between asking for this batch and getting it; gpu is the GPU decoder
    thread's own seconds. decoders counts the images each decoder handled ("cpu", "gpu_hw", "gpu",
    "cpu_fallback") and those none could ("failed").
    """

    keys: list[str]
    tensors: np.ndarray | Any
    errors: list[str]
    read_seconds: float = 0.0
    decode_seconds: float = 0.0
    wait_seconds: float = 0.0
    decoders: dict[str, int] = field(default_factory=dict)
    gpu_seconds: float = 0.0
    ok: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.ok = np.array([not e for e in self.errors], dtype=bool)
        if not self.decoders:  # decoded on the CPU workers
            self.decoders = {"cpu": int(self.ok.sum()), "failed": int((~self.ok).sum())}


#: a batch started: (a call that waits for the batch and returns it, the futures to cancel if the consumer stops)
Started = tuple[Callable[[], Batch], list[Future]]


class BatchDecoder(Protocol):
    """A rank's decoder: `start` a batch's work (reads and decodes, in the background) and get a call that
    waits for the finished `Batch`. Batches are started in input order, several ahead of the one consumed."""

    def start(self, chunk: Sequence[Item]) -> Started:
        """Start reading and decoding `chunk`; nothing here may wait for an earlier batch."""
        ...

    def close(self) -> None:
        """Let go of what the decoder started (its threads); the batches already handed over stay valid."""
        ...
