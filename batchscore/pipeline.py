"""Decode/preprocess stage: read and decode batches in worker processes, ahead of the engine.

Batches are submitted in order and at most `prefetch` are in flight (a bounded queue), so the
engine never waits on one image at a time and memory stays flat on any archive size. A bad image
becomes an error entry in its batch; it never fails the batch or the run.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .preprocess import DecodeError, Preprocess, preprocess
from .sources import Item, Reader


@dataclass
class Batch:
    """One batch: keys in order, the decoded tensors of the good ones, an error text per key ("" = ok)."""

    keys: list[str]
    tensors: np.ndarray
    errors: list[str]
    read_seconds: float = 0.0
    decode_seconds: float = 0.0
    ok: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.ok = np.array([not e for e in self.errors], dtype=bool)


_reader: Reader | None = None


def decode_batch(items: Sequence[Item], spec: Preprocess) -> Batch:
    """Read and preprocess items; failures are recorded per item with a short reason."""
    global _reader
    if _reader is None:
        _reader = Reader()
    tensors, errors = [], []
    read_s = decode_s = 0.0
    for item in items:
        t0 = time.perf_counter()
        try:
            data = _reader.read(item)
        except (OSError, ValueError) as exc:
            errors.append(f"read failed: {exc}")
            continue
        finally:
            t1 = time.perf_counter()
            read_s += t1 - t0
        try:
            tensors.append(preprocess(data, spec))
            errors.append("")
        except DecodeError as exc:
            errors.append(str(exc))
        decode_s += time.perf_counter() - t1
    array = np.stack(tensors) if tensors else np.empty((0, *spec.shape), np.float32)
    return Batch([it.key for it in items], array, errors, read_s, decode_s)


class _Inline(Executor):
    """Decode in the calling process (workers = 1 on a one-core share, or for debugging)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # noqa: ANN001 - Executor signature
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def decode_executor(workers: int) -> Executor:
    """A pool of `workers` decode processes; 0 means decode inline."""
    if workers == 0:
        return _Inline()
    # forkserver: workers do not inherit the MPI library's state, as fork would.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["batchscore.pipeline"])
    return ProcessPoolExecutor(workers, mp_context=ctx)


def batches(items: Sequence[Item], spec: Preprocess, batch_size: int, executor: Executor,
            prefetch: int) -> Iterator[Batch]:
    """Decoded batches of `items` in order, with up to `prefetch` decoding ahead."""
    pending: deque[Future] = deque()
    starts = iter(range(0, len(items), batch_size))
    for start in starts:
        pending.append(executor.submit(decode_batch, items[start:start + batch_size], spec))
        if len(pending) >= max(1, prefetch):
            break
    while pending:
        batch = pending.popleft().result()
        nxt = next(starts, None)
        if nxt is not None:
            pending.append(executor.submit(decode_batch, items[nxt:nxt + batch_size], spec))
        yield batch
