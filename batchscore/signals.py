"""Graceful stop: SIGINT, SIGTERM or SIGUSR1 → commit, finish the current batch, leave a resumable state.

Slurm sends SIGTERM at the walltime or on preemption (then SIGKILL after KillWait), and the signal
asked for with `--signal=B:USR1@120`, forwarded by the batch script; Ctrl-C is SIGINT. A rank that
receives one stops after the batch in hand and tells every other rank (a small point-to-point message
each rank polls for between batches), so the whole job stops within one batch even when the signal
reached one rank only. After the loop, `settle()` — a collective every rank calls — agrees whether any
rank left work undone; then every rank skips the merge and the command exits with EXIT_REQUEUE, never
leaving a rank blocked in a collective. The committed part files are the resumable state: rerunning
the same command continues where the job stopped.

Why also at once, from a thread (`on_signal`): mpiexec forwards SIGTERM and SIGINT to the ranks and
kills them shortly after, often before the batch in hand is done. The signal wakes a watcher thread
through `signal.set_wakeup_fd` even while the main thread is inside a long native call, so the rank's
finished batches are committed and the stop recorded before that kill can land.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np
from mpi4py import MPI

#: Exit status of a run stopped by a signal with work left: EX_TEMPFAIL from sysexits.h, "try again".
#: slurm/nightly.sbatch requeues the job on it; an admin may instead set `RequeueExit=75` in slurm.conf.
EXIT_REQUEUE = 75
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
STOP_TAG = 7302

T = TypeVar("T")


class Interrupted(Exception):
    """The run stopped early on a signal; its committed parts remain and a rerun continues it."""


class GracefulStop:
    """Context manager: while active, the stop signals set a flag instead of killing the process.

    `on_signal`, when set, is called once with the signal's name from a watcher thread as soon as this
    rank receives one (see the module docstring); it must be thread-safe.
    """

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm = comm
        self.received: str | None = None  # the signal this rank received
        self.reason: str | None = None  # what stops the job: this rank's signal or another rank's
        self.told = False
        self.notices = 0
        self.requests: list[MPI.Request] = []
        self.interrupted = False
        self.on_signal: Callable[[str], None] | None = None
        self.announced = False  # the job's one line about the stop is printed (by rank 0)
        self._previous: dict[int, object] = {}
        self._wakeup = (-1, -1)
        self._previous_fd = -1
        self._watcher: threading.Thread | None = None
        self._acting = threading.Lock()  # held while `on_signal` runs

    def __enter__(self) -> "GracefulStop":
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        self._wakeup = os.pipe()
        os.set_blocking(self._wakeup[1], False)
        self._previous_fd = signal.set_wakeup_fd(self._wakeup[1], warn_on_full_buffer=False)
        self._watcher = threading.Thread(target=self._watch, name="stop-signal", daemon=True)
        self._watcher.start()
        return self

    def quiet(self) -> None:
        """From now on a signal only sets the flag; returns once an `on_signal` call in progress is done, so the
        caller never writes beside it."""
        with self._acting:
            self.on_signal = None

    def __exit__(self, *exc: object) -> None:
        self.quiet()
        signal.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.close(self._wakeup[1])  # the watcher reads end-of-file and returns
        self._watcher.join()
        os.close(self._wakeup[0])

    def _handle(self, signum: int, _frame: object) -> None:
        # Only set a flag here: the loop acts on it between batches, outside any MPI call.
        self.received = self.received or signal.Signals(signum).name

    def _watch(self) -> None:
        """Wake on each signal the interpreter catches; call `on_signal` once for the first stop signal."""
        stops = {int(s) for s in STOP_SIGNALS}
        called = False
        while data := os.read(self._wakeup[0], 64):
            first = next((signal.Signals(b).name for b in data if b in stops), None)
            with self._acting:
                act = self.on_signal
                if first and act and not called:
                    called = True
                    act(first)

    def poll(self) -> bool:
        """True once a stop was requested here or on any other rank; tells the others once."""
        if self.received and not self.told:
            self.reason = f"{self.received} on rank {self.comm.rank}"
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
