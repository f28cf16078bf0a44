"""HDF5 file locking on network filesystems: find out before any work, and say what to set.

HDF5 (1.10 and later) locks every file it opens. On NFS without a lock service, on Lustre mounted
without `flock`, and on some other parallel filesystems that call fails, and h5py reports only
"unable to lock file, errno = 37". `check_locking` creates a small HDF5 file in the output folder
when the run is planned, so such a job fails at start (exit 2) with the fix instead of an hour in.
Turning locking off is safe for batchscore: each file it writes has a single writer and is
published by rename, and readers open only published files.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import h5py

from .config import ConfigError

FIX = "HDF5_USE_FILE_LOCKING=FALSE"


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path` (e.g. nfs4, lustre, ext4), from /proc/mounts."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    best, kind = "", "unknown"
    target = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > len(best):
            best, kind = mount, fields[2]
    return kind


def is_lock_error(exc: Exception) -> bool:
    """True for HDF5's failure to lock a file (as opposed to a missing file or a full disk)."""
    return "unable to lock file" in str(exc)


def lock_advice(folder: Path) -> str:
    """The message for a lock failure in `folder`: what filesystem, what to set, where."""
    return (f"HDF5 cannot lock files in {folder} (filesystem: {filesystem_type(folder)}); this happens on "
            f"network filesystems without file locking (NFS without lockd, Lustre without flock). "
            f"Set {FIX} in the job's environment (e.g. `export {FIX}` in the sbatch script, before srun) "
            "and run again")


def check_locking(folder: Path) -> None:
    """Create and remove a small HDF5 file in `folder`; ConfigError with the fix when locking fails."""
    probe = folder / f".h5lock-test-{uuid.uuid4().hex}.h5"
    try:
        with h5py.File(probe, "w"):
            pass
    except OSError as exc:
        if is_lock_error(exc):
            raise ConfigError(lock_advice(folder)) from None
        raise ConfigError(f"cannot create an HDF5 file in {folder}: {exc}") from None
    finally:
        probe.unlink(missing_ok=True)
