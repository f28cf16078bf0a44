"""HDF5 file locking that fails as on NFS without lockd: the job stops at start and names the fix.

The failure is made real at the OS boundary: a preloaded shared library whose flock() fails with
ENOLCK ("No locks available"), which is what the kernel returns on such a mount. HDF5, h5py and
batchscore run unchanged on top of it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import pytest

from batchscore.h5lock import filesystem_type
from conftest import PYTHON, ROOT, mpi_env, write_job

NOLOCK_C = """
#include <errno.h>
int flock(int fd, int operation) { (void)fd; (void)operation; errno = ENOLCK; return -1; }
"""


@pytest.fixture(scope="module")
def nolock(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the flock() shim that stands in for an NFS mount without locks")
    root = tmp_path_factory.mktemp("nolock")
    (root / "nolock.c").write_text(NOLOCK_C)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(root / "nolock.so"), str(root / "nolock.c")], check=True)
    return root / "nolock.so"


def score(job: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "batchscore", "score", "--job", str(job)], capture_output=True, text=True,
                          timeout=300, env={**mpi_env(), **env}, cwd=ROOT)


def test_lock_failure_fails_at_start_naming_the_variable_then_the_variable_works(
        tmp_path: Path, nolock: Path, sample_dir: Path, model: Path) -> None:
    job = write_job(tmp_path / "job.toml", input=str(sample_dir), model=str(model), output=str(tmp_path / "out"),
                    backend="onnxruntime", threads=1)
    res = score(job, LD_PRELOAD=str(nolock))
    assert res.returncode == 2, res.stderr
    assert "HDF5_USE_FILE_LOCKING=FALSE" in res.stderr and "cannot lock files" in res.stderr
    assert "Traceback" not in res.stderr
    assert not list((tmp_path / "out").glob("**/*.h5"))  # failed before any work

    res = score(job, LD_PRELOAD=str(nolock), HDF5_USE_FILE_LOCKING="FALSE")
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "out" / "scores.h5", "r") as f:
        assert len(f["key"]) == len(list(sample_dir.glob("*/*.*")))


def test_filesystem_type_of_a_known_mount() -> None:
    assert filesystem_type(Path("/proc/self")) == "proc"
