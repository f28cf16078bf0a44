"""Decode/preprocess stage: read and decode images in worker threads, ahead of the engine.

Threads, not processes: Pillow's JPEG decoder and resampler and numpy's arithmetic release the
GIL (about 5% of a sample image's decode time holds it), and threads write each image straight
into its batch's array, so no batch is pickled between processes nor stacked from a list.
Measured on 2 cores, decode only (docs/performance.md): 2 threads 514 img/s against 262 on one
core; 2 processes returning pickled batches 380; 2 processes writing into shared memory no
faster than threads. A ring of reused batch arrays saved about 1% of decode time: not worth a
batch that turns invalid when the next one is asked for, so each batch gets a fresh array.

Work is submitted per image, in order, with at most `prefetch` batches in flight (a bounded
queue), so memory stays flat on any archive size and output order is the input order. A bad
image becomes an error entry in its batch; it never fails the batch or the run. With a GPU decoder
(gpudecode.py) the workers only read, and each batch is decoded on the GPU instead (or a share of
it, `decode = "hybrid"`); its tensors are then a torch tensor on that GPU.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .preprocess import DecodeError, Preprocess, preprocess
from .sources import Item, Reader

if TYPE_CHECKING:
    from .gpudecode import GpuDecoder

#: (a call that waits for the batch and returns it, the futures to cancel if the consumer stops)
Started = tuple[Callable[[], "Batch"], list[Future]]


@dataclass
class Batch:
    """One batch: keys in order, the tensors of the good ones, an error text per key ("" = ok).

    tensors: a float32 NCHW host array, or a torch tensor on the GPU when decoded there.
    read/decode seconds are summed over the images (they ran in parallel workers); wait is how
    long the consumer blocked between asking for this batch and getting it; gpu is the GPU decoder
    thread's own seconds (gpudecode.py). decoders counts the images each decoder handled ("cpu",
    "gpu_hw", "gpu", "cpu_fallback") and those none could ("failed").
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


_local = threading.local()


def read_item(item: Item) -> tuple[bytes | None, str, float]:
    """The item's encoded bytes (None when unreadable), the error or "", and the seconds it took."""
    reader = getattr(_local, "reader", None)
    if reader is None:
        reader = _local.reader = Reader()  # one per thread: tar and HDF5 handles are not shared
    t0 = time.perf_counter()
    try:
        return reader.read(item), "", time.perf_counter() - t0
    except (OSError, ValueError) as exc:
        return None, f"read failed: {exc}", time.perf_counter() - t0


def decode_into(out: np.ndarray, item: Item, spec: Preprocess, draft: bool = False) -> tuple[str, float, float]:
    """Read and preprocess one item into `out`; returns (error or "", read seconds, decode seconds)."""
    data, error, read_s = read_item(item)
    if data is None:
        return error, read_s, 0.0
    t1 = time.perf_counter()
    try:
        out[...] = preprocess(data, spec, draft=draft)
        error = ""
    except DecodeError as exc:
        error = str(exc)
    return error, read_s, time.perf_counter() - t1


class _Inline(Executor):
    """Decode in the calling thread (workers = 0: a one-core share, or for debugging)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # noqa: ANN001 - Executor signature
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def decode_executor(workers: int) -> Executor:
    """A pool of `workers` decode threads; 0 means decode inline."""
    return ThreadPoolExecutor(workers, thread_name_prefix="decode") if workers else _Inline()


def cpu_batch(chunk: Sequence[Item], spec: Preprocess, executor: Executor, draft: bool = False) -> Started:
    """Start decoding `chunk` on the CPU workers, each image straight into the batch's array."""
    array = np.empty((len(chunk), *spec.shape), np.float32)
    futures = [executor.submit(decode_into, array[i], it, spec, draft) for i, it in enumerate(chunk)]

    def finish() -> Batch:
        errors, read_s, decode_s = zip(*(f.result() for f in futures)) if futures else ((), (), ())
        batch = Batch([it.key for it in chunk], array, list(errors), sum(read_s), sum(decode_s))
        if not batch.ok.all():
            batch.tensors = array[batch.ok]  # the engine gets the good images only
        return batch

    return finish, futures


def batches(items: Sequence[Item], spec: Preprocess, batch_size: int, executor: Executor,
            prefetch: int = 2, draft: bool = False, gpu: GpuDecoder | None = None) -> Iterator[Batch]:
    """Decoded batches of `items` in input order, with up to `prefetch` batches decoding ahead.

    gpu: decode each batch (or its `share`) on that GPU decoder, the workers reading its bytes.
    """
    start_batch = gpu.start_batch if gpu is not None else cpu_batch
    pending: deque[Started] = deque()

    def submit(start: int) -> None:
        pending.append(start_batch(items[start:start + batch_size], spec, executor, draft))

    asked = time.perf_counter()
    starts = iter(range(0, len(items), batch_size))
    for start in starts:
        submit(start)
        if len(pending) >= max(1, prefetch):
            break
    try:
        while pending:
            finish, _ = pending.popleft()
            batch = finish()
            nxt = next(starts, None)
            if nxt is not None:
                submit(nxt)  # decodes right here with the inline executor: that is waiting too
            batch.wait_seconds = time.perf_counter() - asked
            yield batch
            asked = time.perf_counter()
    finally:  # the consumer stopped early (a signal, an error): drop the work not started yet
        for _, futures in pending:
            for future in futures:
                future.cancel()
