"""Graceful stop: SIGTERM or SIGUSR1 → finish the current batch, commit, leave a resumable state.

Slurm sends SIGTERM at the walltime or on preemption (then SIGKILL after KillWait), and the signal
asked for with `--signal=B:USR1@120`, forwarded by the batch script. A rank that receives one stops
after the batch in hand and tells every other rank (a small point-to-point message each rank polls
for between batches), so the whole job stops within one batch even when the signal reached one rank
only. After the loop, `settle()` — a collective every rank calls — agrees whether any rank left work
undone; then every rank skips the merge and the command exits with EXIT_REQUEUE, never leaving a
rank blocked in a collective. The committed part files are the resumable state: rerunning the same
command continues where the job stopped.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np
from mpi4py import MPI

from .comm import log

#: Exit status of a run stopped by a signal with work left: EX_TEMPFAIL from sysexits.h, "try again".
#: slurm/nightly.sbatch requeues the job on it; an admin may instead set `RequeueExit=75` in slurm.conf.
EXIT_REQUEUE = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
STOP_TAG = 7302

T = TypeVar("T")


class Interrupted(Exception):
    """The run stopped early on a signal; its committed parts remain and a rerun continues it."""


class GracefulStop:
    """Context manager: while active, the stop signals set a flag instead of killing the process."""

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self.received: str | None = None  # the signal this rank received
        self.reason: str | None = None  # what stops the job: this rank's signal or another rank's
        self.told = False
        self.notices = 0
        self.requests: list[MPI.Request] = []
        self.interrupted = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "GracefulStop":
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, _frame: object) -> None:
        # Only set a flag here: the loop acts on it between batches, outside any MPI call.
        self.received = self.received or signal.Signals(signum).name

    def poll(self) -> bool:
        """True once a stop was requested here or on any other rank; tells the others once."""
        if self.received and not self.told:
            self.reason = f"{self.received} on rank {self.comm.rank}"
            log(self.comm.rank, f"{self.received} received: stopping after this batch, telling the other ranks")
            self.requests += [self.comm.isend(self.reason, dest=r, tag=STOP_TAG)
                              for r in range(self.comm.size) if r != self.comm.rank]
            self.told = True
        while self.comm.iprobe(source=MPI.ANY_SOURCE, tag=STOP_TAG):
            self._receive()
        return self.reason is not None

    def _receive(self) -> None:
        reason = self.comm.recv(source=MPI.ANY_SOURCE, tag=STOP_TAG)
        self.reason = self.reason or reason
        self.notices += 1

    def until_stopped(self, items: Iterable[T]) -> Iterator[T]:
        """Yield items until a stop is requested, checking after the caller has handled each one."""
        for item in items:
            yield item
            if self.poll():
                return

    def settle(self, incomplete: bool) -> bool:
        """Collective, after the loop: True on every rank when any rank stopped with work left.

        Also receives every stop notice still in flight, so no message outlives the run.
        """
        counts = np.array([int(self.told), int(incomplete)], dtype=np.int64)
        self.comm.Allreduce(MPI.IN_PLACE, counts, op=MPI.SUM)
        while self.notices < counts[0] - int(self.told):
            self._receive()
        MPI.Request.Waitall(self.requests)
        self.interrupted = bool(counts[1])  # a rank stops early only after a poll() that set `reason`
        return self.interrupted
