"""Reading items' bytes for the decoders, a batch's tar members in large sequential reads.

A batch's members of one shard come in one read (`read_ahead`), which shared filesystems serve far better than a
seek and a small read per image; every other item is read on its own (`read_item`). Each thread keeps its own
`sources.Reader` (tar and HDF5 handles are not shared between threads).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from .sources import Item, Reader

#: tar members less than this far apart (their 512-byte headers and padding between them) share a read
SPAN_GAP = 1 << 20
#: the largest single read of a span
SPAN_MAX = 64 << 20

_local = threading.local()


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
