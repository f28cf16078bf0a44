"""Decode/preprocess stage: read and decode images in worker threads (or processes they feed), ahead of the engine.

The worker threads decode each image straight into its batch's array (Pillow's JPEG decoder and
resampler and numpy's arithmetic release the GIL, about 5% of a sample image's decode time holds
it), or, from 4 cores a rank (worker_kind = "auto"; or "process"), each thread hands a share of the
batch to a decode process of the rank (decodeprocs.py) and copies its rows back: on 2 cores threads
scored the sample faster, on many cores processes (docs/dev/decisions/0001). No batch
is pickled between processes nor stacked from a list. A ring of reused batch arrays saved about 1% of
decode time: not worth a batch that turns invalid when the next one is asked for, so each batch
gets a fresh array.

Work is submitted per image, in order, with at most `prefetch` batches in flight (a bounded
queue), so memory stays flat on any archive size and output order is the input order. Tar shards
are read ahead: a batch's members of one shard come in one large sequential read (`read_ahead`),
which shared filesystems serve far better than a seek and a small read per image. A bad
image becomes an error entry in its batch; it never fails the batch or the run. With a GPU decoder
(gpudecode.py) the workers only read, and each batch is decoded on the GPU instead (or a share of
it, `decode = "hybrid"`); its tensors are then a torch tensor on that GPU.
"""

from __future__ import annotations

import functools
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
    from .decodeprocs import DecodeProcesses
    from .gpudecode import GpuDecoder

#: the most images one decode process's request carries (decodeprocs.py's block holds that many rows)
SHARE_ROWS = 16

#: (a call that waits for the batch and returns it, the futures to cancel if the consumer stops)
Started = tuple[Callable[[], "Batch"], list[Future]]
#: one image decoded on the CPU: (error or "", read seconds, decode seconds)
Row = tuple[str, float, float]


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
#: tar members less than this far apart (their 512-byte headers and padding between them) share a read
SPAN_GAP = 1 << 20
#: the largest single read of a span
SPAN_MAX = 64 << 20


@dataclass
class ReadAhead:
    """A batch's tar members read as spans: their bytes by index in the batch, and the seconds it took."""

    data: dict[int, bytes]
    seconds: float


def tar_spans(chunk: Sequence[Item]) -> list[list[int]]:
    """Indices of `chunk` in runs of two or more tar members of one shard, in file order, SPAN_GAP apart at
    most and SPAN_MAX long at most: each run is one sequential read. Other items are read one by one."""
    runs: list[list[int]] = []
    for i, it in enumerate(chunk):
        if it.kind != "tar":
            continue
        if runs:
            first, last = chunk[runs[-1][0]], chunk[runs[-1][-1]]
            if (it.path == last.path and 0 <= it.offset - (last.offset + last.size) <= SPAN_GAP
                    and it.offset + it.size - first.offset <= SPAN_MAX):
                runs[-1].append(i)
                continue
        runs.append([i])
    return [run for run in runs if len(run) > 1]


def read_ahead(chunk: Sequence[Item]) -> ReadAhead:
    """The bytes of `chunk`'s tar members, one read per `tar_spans` run. A member the span does not hold
    whole (a truncated shard) is left out, so that reading it on its own gives its error."""
    start, data = time.perf_counter(), {}
    reader = _reader()
    for run in tar_spans(chunk):
        first, last = chunk[run[0]], chunk[run[-1]]
        try:
            span = reader.read_span(first.path, first.offset, last.offset + last.size - first.offset)
        except OSError:
            continue
        for i in run:
            piece = span[chunk[i].offset - first.offset:chunk[i].offset - first.offset + chunk[i].size]
            if len(piece) == chunk[i].size:
                data[i] = piece
    return ReadAhead(data, time.perf_counter() - start)


def start_read_ahead(chunk: Sequence[Item], executor: Executor) -> Future | None:
    """Submit `read_ahead` for a batch with tar members, before its per-image tasks: they wait on it, and
    since the pool takes tasks in order it is already running by then (no task waits on one queued)."""
    return executor.submit(read_ahead, chunk) if any(it.kind == "tar" for it in chunk) else None


def _ahead_result(ahead: Future | None) -> ReadAhead | None:
    """A batch's read-ahead once done; None without one, or when it was cancelled (the consumer stopped) or
    failed: its images are then read one by one, and those reads decide their errors."""
    try:
        return ahead.result() if ahead is not None else None
    except Exception:  # noqa: BLE001 - CancelledError, or whatever the read raised
        return None


def read_ahead_seconds(ahead: Future | None) -> float:
    """The seconds a batch's read-ahead took (0 without one, or when it was cancelled or failed)."""
    done = _ahead_result(ahead)
    return done.seconds if done else 0.0


def default_prefetch(workers: int, batch_size: int, gpu_threads: int = 0) -> int:
    """Batches to keep decoding ahead: enough to keep `workers` threads and every GPU decoder thread busy.

    With a GPU decoder, two batches beyond its threads: a batch's reads start only when it is submitted, and with
    one beyond, the decoder thread could finish its batch before the next one's bytes were read (it idled 13% of
    a run); two beyond decoded faster (docs/dev/decisions/0008)."""
    return max(2, 2 * workers // batch_size + 1, gpu_threads + 2 if gpu_threads else 0)


def _reader() -> Reader:
    reader = getattr(_local, "reader", None)
    if reader is None:
        reader = _local.reader = Reader()  # one per thread: tar and HDF5 handles are not shared
    return reader


def read_item(item: Item, ahead: Future | None = None, index: int = 0) -> tuple[bytes | None, str, float]:
    """The item's encoded bytes (None when unreadable), the error or "", and the seconds it took; from its
    batch's read-ahead (`ahead`, the item being number `index` of the batch) when that holds it."""
    done = _ahead_result(ahead)
    if done is not None and index in done.data:
        return done.data[index], "", 0.0  # the span's seconds are counted once, for the batch
    t0 = time.perf_counter()
    try:
        return _reader().read(item), "", time.perf_counter() - t0
    except OSError as exc:  # says what failed, e.g. "[Errno 2] No such file or directory: ..."
        return None, f"read failed: {exc}", time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - whatever else one item's read raises (h5py: TypeError ...) is its row
        return None, f"read failed: {type(exc).__name__}: {exc}", time.perf_counter() - t0


def decode_into(out: np.ndarray, item: Item, spec: Preprocess, draft: bool = False, ahead: Future | None = None,
                index: int = 0) -> Row:
    """Read and preprocess one item into `out`; returns (error or "", read seconds, decode seconds)."""
    data, error, read_s = read_item(item, ahead, index)
    if data is None:
        return error, read_s, 0.0
    t1 = time.perf_counter()
    try:
        out[...] = preprocess(data, spec, draft=draft)
        error = ""
    except DecodeError as exc:
        error = str(exc)
    return error, read_s, time.perf_counter() - t1


def decode_share(out: np.ndarray, items: Sequence[Item], spec: Preprocess, draft: bool = False) -> list[Row]:
    """Read and decode `items` into the rows of `out` in this thread, tar members in large reads first
    (`read_ahead`), whose seconds count once, on the first row: a decode process's request (decodeprocs.py)."""
    ahead = _Inline().submit(read_ahead, items)
    rows = [decode_into(out[j], item, spec, draft, ahead, j) for j, item in enumerate(items)]
    if rows:
        rows[0] = (rows[0][0], rows[0][1] + ahead.result().seconds, rows[0][2])
    return rows


class _Inline(Executor):
    """Decode in the calling thread (workers = 0: a one-core share, or for debugging)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # noqa: ANN001 - Executor signature
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def decode_executor(workers: int) -> Executor:
    """A pool of `workers` decode threads; 0 means decode inline."""
    return ThreadPoolExecutor(workers, thread_name_prefix="decode") if workers else _Inline()


def cpu_batch(chunk: Sequence[Item], spec: Preprocess, executor: Executor, draft: bool = False,
              procs: DecodeProcesses | None = None) -> Started:
    """Start decoding `chunk` on the CPU workers, each image straight into the batch's array; with `procs`, each
    worker hands a share of it (one a process, SHARE_ROWS images at most) to a decode process."""
    array = np.empty((len(chunk), *spec.shape), np.float32)
    if procs is None:
        ahead = start_read_ahead(chunk, executor)
        futures = [executor.submit(decode_into, array[i], it, spec, draft, ahead, i) for i, it in enumerate(chunk)]
    else:  # each share reads its own tar members ahead, in its process
        ahead, n = None, max(1, min(SHARE_ROWS, -(-len(chunk) // procs.count)))
        futures = [executor.submit(procs.decode, array[i:i + n], chunk[i:i + n], spec, draft)
                   for i in range(0, len(chunk), n)]

    def finish() -> Batch:
        rows = [row for f in futures for row in (f.result() if procs else [f.result()])]
        errors, read_s, decode_s = zip(*rows) if rows else ((), (), ())
        read_s = sum(read_s) + read_ahead_seconds(ahead)
        batch = Batch([it.key for it in chunk], array, list(errors), read_s, sum(decode_s))
        if not batch.ok.all():
            batch.tensors = array[batch.ok]  # the engine gets the good images only
        return batch

    return finish, [*([ahead] if ahead else []), *futures]


def batches(items: Sequence[Item], spec: Preprocess, batch_size: int, executor: Executor,
            prefetch: int = 2, draft: bool = False, gpu: GpuDecoder | None = None,
            procs: DecodeProcesses | None = None) -> Iterator[Batch]:
    """Decoded batches of `items` in input order, with up to `prefetch` batches decoding ahead.

    gpu: decode each batch (or its `share`) on that GPU decoder, the workers reading its bytes.
    procs: decode on the CPU in these decode processes, which the workers feed (decodeprocs.py).
    """
    start_batch = gpu.start_batch if gpu is not None else functools.partial(cpu_batch, procs=procs)
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
