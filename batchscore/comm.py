"""MPI plumbing: who am I on the node, how many cores are mine, progress to rank 0, abort on error.

Functions take the communicator as an argument (COMM_WORLD in production, COMM_SELF in tests),
so the same code runs with and without `mpiexec`.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass

from mpi4py import MPI

PROGRESS_TAG = 7301
#: rank 0's wait for the other ranks' ends: how often it looks, and after how long without news it says so
POLL_SECONDS = 0.05
STALL_SECONDS = 300.0


@dataclass(frozen=True)
class Placement:
    """Where this rank runs: its world rank/size, host, and rank among the ranks of its node."""

    rank: int
    size: int
    host: str
    local_rank: int
    local_size: int


def placement(comm: MPI.Comm) -> Placement:
    """Node-local rank from a shared-memory split: what binds a GPU and divides the node's cores."""
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    try:
        return Placement(comm.rank, comm.size, socket.gethostname(), local.rank, local.size)
    finally:
        local.Free()


def cores_for_rank(local_size: int) -> int:
    """CPU cores this rank may use: Slurm's cpus-per-task, else its bound cores, else a fair share."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return max(1, int(slurm))
    mine = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    total = os.cpu_count() or mine
    if mine < total:  # the launcher already bound this rank to its cores
        return max(1, mine)
    return max(1, total // max(1, local_size))


def log(rank: int, message: str) -> None:
    """One line on stderr that names the rank and host."""
    print(f"[batchscore rank {rank} {socket.gethostname()}] {message}", file=sys.stderr, flush=True)


def abort_on_exception(comm: MPI.Comm, exc: BaseException) -> None:
    """Print the rank, host and traceback, then stop every rank (no rank left blocked in a collective)."""
    tb = "".join(traceback.format_exception(exc))
    log(comm.rank, f"failed:\n{tb}")
    if comm.size > 1:
        comm.Abort(1)


class Progress:
    """Aggregate progress on rank 0 (tqdm), fed by small non-blocking messages from the other ranks.

    Each rank reports its running count; rank 0 polls between its own batches, so the bar and ETA
    count every rank's images. `close()` on rank 0 waits until every rank has reported its end.
    """

    def __init__(self, comm: MPI.Comm, total: int, initial: int = 0, enabled: bool = True,
                 interval: float = 0.5) -> None:
        self.comm = comm
        self.interval = interval
        self.counts = [0] * comm.size
        self.finished = [False] * comm.size
        self.last_sent = 0.0
        self.requests: list[MPI.Request] = []
        self.initial = initial
        self.bar = None
        if comm.rank == 0 and enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="img", dynamic_ncols=True,
                            disable=None, desc=f"scoring on {comm.size} rank(s)")

    def update(self, count: int, final: bool = False) -> None:
        """Report this rank's running count (cumulative) of processed images."""
        if self.comm.rank == 0:
            self._set(0, count, final)
            self._poll()
            return
        now = time.monotonic()
        if final or now - self.last_sent >= self.interval:
            self.requests = [r for r in self.requests if not r.Test()]
            self.requests.append(self.comm.isend((count, final), dest=0, tag=PROGRESS_TAG))
            self.last_sent = now

    def close(self, count: int) -> None:
        """Send this rank's final count; on rank 0, drain until every rank has finished."""
        self.update(count, final=True)
        if self.comm.rank == 0:
            # polled with a sleep, not a blocking recv (MPI busy-waits in it: a stuck rank cost a core)
            heard, warned = time.monotonic(), 0.0
            while not all(self.finished):
                before = list(self.counts)
                self._poll()
                now = time.monotonic()
                if self.counts != before:
                    heard = now
                elif now - heard >= STALL_SECONDS and now - warned >= STALL_SECONDS:
                    waiting = [r for r, done in enumerate(self.finished) if not done]
                    log(0, f"waiting for rank(s) {', '.join(map(str, waiting))}: no progress for "
                           f"{now - heard:.0f} s (an image read that never ends? see their logs)")
                    warned = now
                time.sleep(POLL_SECONDS)
            if self.bar is not None:
                self.bar.close()
        else:
            MPI.Request.Waitall(self.requests)

    def _poll(self) -> None:
        status = MPI.Status()
        while self.comm.iprobe(source=MPI.ANY_SOURCE, tag=PROGRESS_TAG, status=status):
            msg = self.comm.recv(source=status.Get_source(), tag=PROGRESS_TAG)
            self._set(status.Get_source(), *msg)

    def _set(self, rank: int, count: int, final: bool) -> None:
        self.counts[rank] = count
        self.finished[rank] = self.finished[rank] or final
        if self.bar is not None and not self.bar.disable:
            self.bar.n = self.initial + sum(self.counts)
            self.bar.update(0)  # redraws at tqdm's own pace, not on every message
