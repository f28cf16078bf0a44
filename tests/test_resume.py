"""Resume under real mpiexec: kill -9 a rank, or stop the job with SIGTERM/SIGUSR1, then rerun.

The runs are slowed down (batch size 1, a part file per batch, one thread, a few hundred images) so
the signal lands while every rank still has work; the test waits until parts are committed before
it sends it. Every rerun must finish with each input exactly once in scores.h5, scored the same as
an uninterrupted run, and must not score again what was committed before the stop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from batchscore.signals import GracefulStop
from batchscore.writer import PARTS, done_keys
from conftest import MPIEXEC, PYTHON, batchscore, copied_archive, mpi_env, write_job

COPIES = 8  # 8 × the 48 sample images: enough batches of one that a stop lands mid-run
FAST = ("--batch-size", "16")  # a rerun may use another batch size: it changes no score


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    return copied_archive(tmp_path_factory, sample_dir, COPIES)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, archive: Path, model: Path) -> dict[str, np.ndarray]:
    """Scores of an uninterrupted run of the same archive."""
    root = tmp_path_factory.mktemp("reference")
    job = write_job(root / "job.toml", input=str(archive), model=str(model), output=str(root / "out"),
                    backend="onnxruntime", batch_size=16, threads=1, workers=0)
    res = batchscore("score", "--job", str(job), ranks=2)
    assert res.returncode == 0, res.stderr
    with h5py.File(root / "out" / "scores.h5", "r") as f:
        return {"key": f["key"].asstr()[:], "topk_index": f["topk_index"][:], "topk_score": f["topk_score"][:]}


def slow_job(tmp_path: Path, archive: Path, model: Path, workers: int = 0) -> Path:
    return write_job(tmp_path / "job.toml", input=str(archive), model=str(model), output=str(tmp_path / "out"),
                     backend="onnxruntime", batch_size=1, commit_every=1, threads=1, workers=workers)


def start(job: Path) -> subprocess.Popen:
    cmd = [MPIEXEC, "--oversubscribe", "-n", "2", PYTHON, "-m", "batchscore", "score", "--job", str(job)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=mpi_env(),
                            start_new_session=True)


def wait_for_parts(out: Path, proc: subprocess.Popen, count: int = 8, timeout: float = 120) -> None:
    """Until `count` parts are committed under `out` (both ranks are well into their loops)."""
    deadline = time.monotonic() + timeout
    while len(list(out.glob(f"**/{PARTS}/*.h5"))) < count:
        assert proc.poll() is None, f"run ended before the stop: {proc.communicate()}"
        assert time.monotonic() < deadline, "no parts committed in time"
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def descendants(pid: int) -> list[int]:
    found = []
    for kid in children(pid):
        found += [kid, *descendants(kid)]
    return found


def rank_pid(launcher: int, rank: int) -> int:
    """The process of MPI rank `rank` under an Open MPI launcher (its environment names the rank)."""
    for pid in descendants(launcher):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"OMPI_COMM_WORLD_RANK={rank}".encode() in env:
            return pid
    raise AssertionError(f"rank {rank} not found under pid {launcher}")


def check_exactly_once(out: Path, reference: dict[str, np.ndarray], resumed: int) -> None:
    """scores.h5 holds every input once, scored as in the reference; the rerun skipped `resumed` keys."""
    with h5py.File(out / "scores.h5", "r") as f:
        keys = f["key"].asstr()[:]
        assert keys.tolist() == reference["key"].tolist()  # same keys, sorted, none twice
        np.testing.assert_array_equal(f["topk_index"][:, 0], reference["topk_index"][:, 0])
        np.testing.assert_allclose(f["topk_score"][:], reference["topk_score"][:], atol=1e-5)
        assert (f["status"][:] == 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"]["resumed_from_earlier_runs"] == resumed
    assert summary["images"]["scored_this_run"] == len(keys) - resumed
    assert not (out / PARTS).exists()


def test_kill_9_one_rank_then_rerun_scores_each_image_exactly_once(tmp_path: Path, archive: Path, model: Path,
                                                                   reference: dict) -> None:
    job, out = slow_job(tmp_path, archive, model), tmp_path / "out"
    proc = start(job)
    wait_for_parts(out, proc)
    os.kill(rank_pid(proc.pid, 1), signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert not (out / "scores.h5").exists()  # nothing that looks complete
    committed = done_keys(out)
    assert 0 < len(committed) < len(reference["key"]), err

    res = batchscore("score", "--job", str(job), *FAST, ranks=2)
    assert res.returncode == 0, res.stderr
    assert f"({len(committed)} already done)" in res.stderr
    check_exactly_once(out, reference, resumed=len(committed))


def test_graceful_stop_with_comm_self() -> None:
    """A signal inside the context only sets a flag; the loop stops after the item in hand."""
    with GracefulStop(MPI.COMM_SELF) as stop:
        seen = []
        for i in stop.until_stopped(range(10)):
            seen.append(i)
            if i == 2:
                os.kill(os.getpid(), signal.SIGUSR1)
        assert seen == [0, 1, 2]
        assert stop.settle(incomplete=len(seen) < 10) and stop.reason == "SIGUSR1 on rank 0"
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # handlers restored on exit


def test_a_stop_signal_is_acted_on_at_once_from_a_thread() -> None:
    """`on_signal` runs on the watcher thread while the main thread is still busy (mpiexec may kill soon)."""
    called: list[tuple[str, str]] = []
    with GracefulStop(MPI.COMM_SELF) as stop:
        stop.on_signal = lambda name: called.append((name, threading.current_thread().name))
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: a flag, not KeyboardInterrupt
        deadline = time.monotonic() + 5
        while not called and time.monotonic() < deadline:
            sum(range(10_000))  # the main thread keeps working; the watcher acts meanwhile
        os.kill(os.getpid(), signal.SIGTERM)  # acted on once only
        assert stop.poll() and stop.reason == "SIGINT on rank 0"
    assert called == [("SIGINT", "stop-signal")]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and signal.set_wakeup_fd(-1) == -1
