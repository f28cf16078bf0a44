"""Decode processes: a rank's CPU decode (read, decode, resize, normalise) in processes of its own.

Why: the decode threads of cpu.py share one interpreter lock, so on many cores they stop scaling; each
process has a lock of its own. On 2 cores threads scored the sample faster (PROCESS_CORES). Measurements:
docs/dev/decisions/0001 (benchmarks/cpu_decode_scaling.py reproduces them).

A process serves one request at a time: a share of a batch (SHARE_ROWS images at most). It reads them (tar
members in one sequential read, reading.read_ahead), decodes each into a row of its shared-memory block (memfd)
and replies with each image's error and seconds. The rank's worker thread that sent the share waits with the lock
released and copies the rows into the batch's array with os.preadv, also without the lock. Nothing large is
pickled; a bad image is an error row, as in a thread.

Processes start with `python -m batchscore.decode.procs`, which imports neither MPI nor torch; they ignore the
stop signals (the rank finishes its batch first, signals.py) and exit when the rank closes its end. A process
that dies (or cannot start) makes the rank decode in its threads from then on, said once through `warn`: the run
goes on.
"""

from __future__ import annotations

import mmap
import os
import queue
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from ..preprocess import Preprocess
from ..sources import Item
from .cpu import SHARE_ROWS, decode_share
from .protocol import Row

#: worker_kind = "auto" decodes in processes from this many cores a rank: on 2 cores threads were faster (the
#: processes' start-up costs more than the lock there), on many cores processes (docs/dev/decisions/0001)
PROCESS_CORES = 4
#: how long a new process may take to import and answer (a cold Python on a network filesystem can be slow)
START_SECONDS = 120.0


class DecodeProcessError(OSError):
    """Decode processes could not start, or one died: the rank decodes in its threads instead."""


@dataclass
class _Process:
    popen: subprocess.Popen
    conn: Connection
    block: int  # the shared block's file descriptor (memfd)


class DecodeProcesses:
    """`count` decode processes of one rank, each with a block of cpu.SHARE_ROWS rows of `shape` float32 (9.6 MB
    at 3x224x224); `decode` is called from the rank's worker threads, one process per call."""

    def __init__(self, count: int, shape: tuple[int, ...], warn: Callable[[str], None] = print) -> None:
        self.count, self.warn, self.broken = count, warn, ""
        self.processes: list[_Process] = []
        self.idle: queue.SimpleQueue[_Process] = queue.SimpleQueue()
        try:
            for _ in range(count):  # started together: each imports while the next starts
                self.processes.append(self._start(SHARE_ROWS * int(np.prod(shape)) * 4))
            for process in self.processes:
                if not process.conn.poll(START_SECONDS) or process.conn.recv() != "ready":
                    raise DecodeProcessError(f"a decode process did not start within {START_SECONDS:.0f} s")
                self.idle.put(process)
        except (OSError, EOFError) as exc:
            self.close()
            raise DecodeProcessError(f"cannot start decode processes: {exc}") from exc

    @staticmethod
    def _start(size: int) -> _Process:
        memfd = os.memfd_create("batchscore-decode")
        ours, theirs = socket.socketpair()
        try:
            os.ftruncate(memfd, size)
            root = str(Path(__file__).resolve().parents[2])  # this package, wherever the rank imported it from
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))}
            popen = subprocess.Popen([sys.executable, "-m", "batchscore.decode.procs", str(theirs.fileno()),
                                      str(memfd)], pass_fds=(theirs.fileno(), memfd), env=env,
                                     stdin=subprocess.DEVNULL)
        except OSError:
            os.close(memfd)
            raise
        finally:
            theirs.close()
        return _Process(popen, Connection(ours.detach()), memfd)

    def decode(self, out: np.ndarray, items: Sequence[Item], spec: Preprocess, draft: bool = False) -> list[Row]:
        """Read and decode `items` (at most SHARE_ROWS) into the rows of `out` in a free process; here, once a
        process has failed. Per item: (error or "", read seconds, decode seconds)."""
        if not self.broken:
            process = self.idle.get()
            try:
                if not self.broken:  # another thread's process may have failed while this one waited
                    process.conn.send((list(items), spec, draft))
                    rows = process.conn.recv()
                    if os.preadv(process.block, [out.data.cast("B")], 0) != out.nbytes:
                        raise EOFError("the decode block is shorter than the rows")
                    return rows
            except (OSError, EOFError) as exc:
                code = process.popen.poll()
                self._fail(f"exit status {code}" if code is not None else f"{type(exc).__name__}: {exc}")
            finally:
                self.idle.put(process)  # a failed one too: threads waiting for a process then see `broken`
        return decode_share(out, items, spec, draft)

    def _fail(self, why: str) -> None:
        if not self.broken:
            self.broken = why
            self.warn(f"a decode process failed ({why}); decoding in the worker threads from now on")

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


@contextmanager
def decode_processes(kind: str, workers: int, cores: int, shape: tuple[int, ...],
                     warn: Callable[[str], None]) -> Iterator[DecodeProcesses | None]:
    """The rank's decode processes for worker_kind = `kind` on `cores` cores; None (decode in the worker threads)
    for "thread", for "auto" below PROCESS_CORES cores, for no workers, or where they cannot start (said through
    `warn`)."""
    procs = None
    if (kind == "process" or kind == "auto" and cores >= PROCESS_CORES) and workers:
        try:
            procs = DecodeProcesses(workers, shape, warn)
        except (DecodeProcessError, AttributeError) as exc:  # AttributeError: no os.memfd_create (not Linux)
            warn(f"worker_kind = \"process\": {exc}; decoding in {workers} threads")
    try:
        yield procs
    finally:
        if procs is not None:
            procs.close()


def serve(conn: Connection, block: mmap.mmap) -> None:
    """A decode process's loop: (items, spec, draft) in, the rows decoded into `block`, per item (error, read
    seconds, decode seconds) out. Ends when the rank closes its end (or has gone: killed, its reply unread)."""
    rows = np.frombuffer(block, np.float32)
    while True:
        try:
            items, spec, draft = conn.recv()
        except EOFError:
            return
        reply = decode_share(rows[:len(items) * int(np.prod(spec.shape))].reshape(len(items), *spec.shape), items,
                             spec, draft)
        try:
            conn.send(reply)
        except OSError:  # the rank has gone (killed): nobody reads the reply
            return


def main(argv: Sequence[str]) -> None:
    """`python -m batchscore.decode.procs SOCKET_FD MEMFD`, as DecodeProcesses starts it."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)  # the rank stops it, once the batch in hand is done
    conn, memfd = Connection(int(argv[0])), int(argv[1])
    block = mmap.mmap(memfd, os.fstat(memfd).st_size)
    os.close(memfd)
    conn.send("ready")
    serve(conn, block)


if __name__ == "__main__":
    main(sys.argv[1:])
