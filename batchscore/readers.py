"""Read processes: a rank's file reads and JPEG header checks for GPU decode, in processes of their own.

Why: with decode = "gpu" the rank's workers only read each image's bytes and check its headers
(jpeg.gpu_route), pure Python that held the interpreter lock in about 18% of the samples of a scoring run on an
H200, while the decoder thread (nvImageCodec takes the lock back once per image) and the loop waited for it
(docs/performance.md, "who holds the interpreter lock"). A process has a lock of its own. Each worker thread
then only sends a batch's items to a process, waits with the lock released, and copies the bytes out.

A process serves one request at a time (a batch's GPU share): it reads the items (tar members in large
sequential reads, pipeline.read_ahead), checks them, and writes their bytes one after another into a
shared-memory block (memfd); an item that does not fit comes back in the reply. The rank takes each image's
bytes out of the block with os.pread, which copies with the interpreter lock released, as a file read does
(slicing a mapping of the block copied with the lock held: 103 of the read worker's 138 samples holding it in a
py-spy profile on an H200, h200-pyspy-gil-readers-mmap.json). Nothing large is pickled.

Processes start with `python -m batchscore.readers`, which imports neither MPI nor torch; they ignore the stop
signals (the rank finishes its batch first, signals.py) and exit when the rank closes its end. A process that dies makes `ReadProcesses.read` read in the calling thread from then on, said
once through `warn`: the run goes on.
"""

from __future__ import annotations

import mmap
import os
import queue
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from .jpeg import gpu_route
from .pipeline import read_ahead, read_item
from .sources import Item

#: per item: (its bytes or None when unreadable, "" or why the CPU path must decode it (jpeg.gpu_route), the read
#: error or "", seconds)
Row = tuple[bytes | None, str, str, float]
#: a process's shared block: a batch of 256 ImageNet-sized JPEGs (about 110 KB each) takes 28 MB
BLOCK_BYTES = 64 << 20
#: how long a new process may take to import and answer (a cold Python on a network filesystem can be slow)
START_SECONDS = 120.0


class ReadProcessError(OSError):
    """A read process could not start, or died: the rank reads in its threads instead."""


def read_routed(items: Sequence[Item], indices: Sequence[int], max_pixels: int,
                ahead: Future | None = None) -> list[Row]:
    """Read and check the items at `indices` of `items`, here; `ahead` is their batch's read-ahead, if any."""
    rows = []
    for i in indices:
        data, error, seconds = read_item(items[i], ahead, i)
        rows.append((data, gpu_route(data, max_pixels) if data is not None else "", error, seconds))
    return rows


def read_batch(items: Sequence[Item], max_pixels: int) -> list[Row]:
    """Read and check a batch's items here: tar members in large reads first (pipeline.read_ahead), whose seconds
    count once, on the first row (as read_item counts them)."""
    ahead: Future = Future()
    ahead.set_result(read_ahead(items))
    rows = read_routed(items, range(len(items)), max_pixels, ahead)
    if rows:
        rows[0] = (*rows[0][:3], rows[0][3] + ahead.result().seconds)
    return rows


def serve(conn: Connection, block: mmap.mmap) -> None:
    """A read process's loop: (items, max_pixels) in; per item its bytes' (offset, length) in `block` (or the
    bytes, where they do not fit), route, error and seconds out. Ends when the rank closes its end."""
    while True:
        try:
            items, max_pixels = conn.recv()
        except EOFError:
            return
        used, reply = 0, []
        for data, route, error, seconds in read_batch(items, max_pixels):
            if data is not None and used + len(data) <= len(block):
                block[used:used + len(data)] = data
                reply.append(((used, len(data)), route, error, seconds))
                used += len(data)
            else:
                reply.append((data, route, error, seconds))
        conn.send(reply)


@dataclass
class _Process:
    popen: subprocess.Popen
    conn: Connection
    block: int  # the shared block's file descriptor (memfd)


class ReadProcesses:
    """`count` read processes of one rank; `read` is called from its worker threads, one process per call."""

    def __init__(self, count: int, warn: Callable[[str], None] = print, block_bytes: int = BLOCK_BYTES) -> None:
        self.warn, self.broken = warn, ""
        self.processes: list[_Process] = []
        self.idle: queue.SimpleQueue[_Process] = queue.SimpleQueue()
        try:
            for _ in range(count):  # started together: each imports while the next starts
                self.processes.append(self._start(block_bytes))
            for process in self.processes:
                if not process.conn.poll(START_SECONDS) or process.conn.recv() != "ready":
                    raise ReadProcessError(f"a read process did not start within {START_SECONDS:.0f} s")
                self.idle.put(process)
        except (OSError, EOFError) as exc:
            self.close()
            raise ReadProcessError(f"cannot start read processes: {exc}") from exc

    @staticmethod
    def _start(size: int) -> _Process:
        memfd = os.memfd_create("batchscore-read")
        ours, theirs = socket.socketpair()
        try:
            os.ftruncate(memfd, size)
            root = str(Path(__file__).resolve().parent.parent)  # this package, wherever the rank imported it from
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
            popen = subprocess.Popen([sys.executable, "-m", "batchscore.readers", str(theirs.fileno()), str(memfd)],
                                     pass_fds=(theirs.fileno(), memfd), env=env, stdin=subprocess.DEVNULL)
        except OSError:
            os.close(memfd)
            raise
        finally:
            theirs.close()
        return _Process(popen, Connection(ours.detach()), memfd)

    def read(self, items: Sequence[Item], max_pixels: int) -> list[Row]:
        """Read and check `items` (a batch's GPU share) in a free process; here, once a process has failed."""
        if not self.broken:
            process = self.idle.get()
            try:
                if not self.broken:  # another thread's process may have failed while this one waited
                    process.conn.send((list(items), max_pixels))
                    return [(os.pread(process.block, data[1], data[0]) if isinstance(data, tuple) else data, route,
                             error, seconds) for data, route, error, seconds in process.conn.recv()]
            except (OSError, EOFError) as exc:
                code = process.popen.poll()
                self._fail(f"exit status {code}" if code is not None else f"{type(exc).__name__}: {exc}")
            finally:
                self.idle.put(process)  # a failed one too: threads waiting for a process then see `broken`
        return read_batch(items, max_pixels)

    def _fail(self, why: str) -> None:
        if not self.broken:
            self.broken = why
            self.warn(f"a read process failed ({why}); reading in the worker threads from now on")

    def close(self) -> None:
        """Close each process's end; it exits on that (killed if it has not within 10 s)."""
        for process in self.processes:
            process.conn.close()
        for process in self.processes:
            try:
                process.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
            os.close(process.block)
        self.processes.clear()


def main(argv: Sequence[str]) -> None:
    """`python -m batchscore.readers SOCKET_FD MEMFD`, as ReadProcesses starts it."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)  # the rank stops it, once the batch in hand is done
    conn, memfd = Connection(int(argv[0])), int(argv[1])
    block = mmap.mmap(memfd, os.fstat(memfd).st_size)
    os.close(memfd)
    conn.send("ready")
    serve(conn, block)


if __name__ == "__main__":
    main(sys.argv[1:])
