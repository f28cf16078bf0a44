"""One job per output folder: rank 0 holds `OUTPUT/.batchscore.lock` for the whole run.

Two jobs writing parts into one folder leave rows that no merge can reconcile, so a second job is
refused at start with the holder's host and PID. The lock is an exclusive `flock` on the file, which
the kernel drops when its holder dies (kill -9 included), so a stale lock is taken over without
asking; the file names the holder for the message. Where the filesystem has no `flock`, the file's
host and PID decide: on the same host a dead PID is stale; on another host the user is told which
file to remove.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from .config import ConfigError

LOCK = ".batchscore.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _busy(folder: Path, holder: dict) -> ConfigError:
    who = f"host {holder.get('host', '?')}, PID {holder.get('pid', '?')}, since {holder.get('since', '?')}"
    return ConfigError(f"{folder} is in use by another batchscore job ({who}); wait for it to finish or "
                       f"choose another --output (if that job is gone, remove {folder / LOCK})")


class OutputLock:
    """Held by rank 0 from planning to the end of the merge; `release()` (or the process's end) frees it."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK
        self.fd: int | None = None
        self.stale: dict = {}  # the previous holder, when its lock was taken over

    def acquire(self) -> "OutputLock":
        """Take the lock or raise ConfigError naming the holder."""
        me = {"host": socket.gethostname(), "pid": os.getpid(),
              "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise _busy(self.path.parent, _holder(self.path)) from None
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                return self._acquire_without_flock(me)
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and flock: try again
                break
            os.close(fd)
        self.fd = fd
        previous = _holder(self.path)
        if previous:  # its holder died without releasing: the kernel dropped its flock
            self.stale = previous
        self._write(me)
        return self

    def _acquire_without_flock(self, me: dict) -> "OutputLock":
        previous = _holder(self.path)
        if previous and (previous.get("host") != me["host"] or _alive(int(previous.get("pid", 0)))):
            raise _busy(self.path.parent, previous)
        self.stale = previous
        self.path.unlink(missing_ok=True)  # a dead holder's, or empty: made by the open before the flock attempt
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise _busy(self.path.parent, _holder(self.path)) from None
        self._write(me)
        return self

    def _write(self, me: dict) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(self.fd)

    def release(self) -> None:
        """Remove the file, then drop the lock (in this order, so no one locks a file about to vanish)."""
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
