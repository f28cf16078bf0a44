"""The decode stage of a rank: batches of items decoded ahead of the engine, in input order.

`batches` knows decoders only through `decode.protocol.BatchDecoder` (the CPU decoder, threads or processes, and
the GPU decoder alike). Work is started a batch at a time, with at most `prefetch` batches in flight (a bounded
queue), so memory stays flat on any archive size and output order is the input order.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence

from .decode.protocol import Batch, BatchDecoder, Started
from .sources import Item

__all__ = ["Batch", "batches", "default_prefetch"]


def default_prefetch(workers: int, batch_size: int, gpu: bool = False) -> int:
    """Batches to keep decoding ahead: enough to keep `workers` threads (and the GPU decoder's thread) busy.

    With a GPU decoder, three: a batch's reads start only when it is submitted, and with one beyond the decoder's
    batch, the decoder thread could finish its batch before the next one's bytes were read; two beyond decoded
    faster (docs/dev/decisions/0008)."""
    return max(2, 2 * workers // batch_size + 1, 3 if gpu else 0)


def batches(items: Sequence[Item], decoder: BatchDecoder, batch_size: int, prefetch: int = 2) -> Iterator[Batch]:
    """Decoded batches of `items` in input order, with up to `prefetch` batches decoding ahead."""
    pending: deque[Started] = deque()

    def submit(start: int) -> None:
        pending.append(decoder.start(items[start:start + batch_size]))

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
