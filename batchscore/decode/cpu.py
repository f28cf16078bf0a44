"""The CPU decoder: read and decode images in the rank's worker threads, or in decode processes they feed.

The worker threads decode each image straight into its batch's array (Pillow's JPEG decoder and resampler and
numpy's arithmetic release the GIL, about 5% of a sample image's decode time holds it), or, from 4 cores a rank
(worker_kind = "auto"; or "process"), each thread hands a share of the batch to a decode process of the rank
(`procs`) and copies its rows back: on 2 cores threads scored the sample faster, on many cores processes
(docs/dev/decisions/0001). No batch is pickled between processes nor stacked from a list; each batch gets a
fresh array. A bad image becomes an error entry in its batch; it never fails the batch or the run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np

from ..preprocess import DecodeError, Preprocess, preprocess
from ..reading import read_ahead, read_ahead_seconds, read_item, start_read_ahead
from ..sources import Item
from .protocol import Batch, Row, Started

#: the most images one decode process's request carries (procs.py's block holds that many rows)
SHARE_ROWS = 16


class ShareDecoders(Protocol):
    """Decoders a worker thread hands a share of a batch to (`procs.DecodeProcesses`)."""

    count: int

    def decode(self, out: np.ndarray, items: Sequence[Item], spec: Preprocess, draft: bool = False) -> list[Row]:
        """Read and decode `items` (SHARE_ROWS at most) into the rows of `out`."""
        ...


def decode_into(out: np.ndarray, item: Item, spec: Preprocess, draft: bool = False, ahead: Future | None = None,
                index: int = 0) -> Row:
    """Read and preprocess one item into `out`; returns (error or "", read seconds, decode seconds)."""
    data, error, read_s = read_item(item, ahead, index)
    if data is None:
        return error, read_s, 0.0
    t1 = time.perf_counter()
    try:
        preprocess(data, spec, draft=draft, out=out)
        error = ""
    except DecodeError as exc:
        error = str(exc)
    return error, read_s, time.perf_counter() - t1


def decode_share(out: np.ndarray, items: Sequence[Item], spec: Preprocess, draft: bool = False) -> list[Row]:
    """Read and decode `items` into the rows of `out` in this thread, tar members in large reads first
    (`read_ahead`), whose seconds count once, on the first row: a decode process's request (procs.py)."""
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


class CpuDecoder:
    """Pillow on `executor`'s workers, each image straight into the batch's array; with `procs`, each worker hands
    a share of the batch (one a process, SHARE_ROWS images at most) to a decode process."""

    def __init__(self, spec: Preprocess, executor: Executor, draft: bool = False,
                 procs: ShareDecoders | None = None) -> None:
        self.spec, self.executor, self.draft, self.procs = spec, executor, draft, procs

    def start(self, chunk: Sequence[Item]) -> Started:
        """Submit `chunk`'s reads and decodes; the call returned waits for them and makes the Batch."""
        spec, executor, draft, procs = self.spec, self.executor, self.draft, self.procs
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
            batch = Batch([it.key for it in chunk], array, list(errors), sum(read_s) + read_ahead_seconds(ahead),
                          sum(decode_s))
            if not batch.ok.all():
                batch.tensors = array[batch.ok]  # the engine gets the good images only
            return batch

        return finish, [*([ahead] if ahead else []), *futures]

    def close(self) -> None:
        """Nothing of its own: the executor and processes belong to the caller."""
