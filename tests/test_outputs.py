"""Outputs never wedge: kill -9 at each point of a run under real mpiexec, then a rerun publishes.

One job per output folder (a lock held by rank 0, taken over when its holder died), parts of images
removed since they were scored are ignored (also for --incremental), a killed --overwrite run keeps the
previous result, and the temporary files of a killed merge or an unfinished publication are cleaned up.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np

from batchscore.incremental import INDEX, RUNS
from batchscore.outlock import LOCK
from batchscore.writer import PARTS, done_keys
from conftest import PYTHON, batchscore, write_job
from test_h5lock import nolock  # noqa: F401
from test_incremental import images
from test_resume import (FAST, archive, check_exactly_once, descendants, rank_pid, reference, slow_job, start,  # noqa: F401
                         wait_for_parts)


def kill_job(proc: subprocess.Popen) -> None:
    """kill -9 every rank, then the launcher (Open MPI starts the ranks in sessions of their own)."""
    for pid in [*descendants(proc.pid), proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate(timeout=60)


def test_a_second_job_into_a_held_folder_is_refused_and_a_dead_holder_s_lock_is_taken_over(
        tmp_path: Path, archive: Path, model: Path, reference: dict) -> None:
    job, out = slow_job(tmp_path, archive, model), tmp_path / "out"
    proc = start(job)
    wait_for_parts(out, proc)
    holder = rank_pid(proc.pid, 0)
    for pid in descendants(proc.pid):  # a hung job: alive, holding the lock, and never finishing meanwhile
        os.kill(pid, signal.SIGSTOP)
    second = batchscore("score", "--job", str(job), *FAST, ranks=2)
    assert second.returncode == 2, second.stderr
    (line,) = [ln for ln in second.stderr.splitlines() if "in use by another batchscore job" in ln]
    assert f"host {socket.gethostname()}, PID {holder}," in line and str(out / LOCK) in line

    kill_job(proc)  # the holder dies with the lock file in place
    assert json.loads((out / LOCK).read_text())["pid"] == holder
    committed = done_keys(out)
    res = batchscore("score", "--job", str(job), *FAST, ranks=2)
    assert res.returncode == 0, res.stderr
    assert f"took over the lock of a job that is gone (host {socket.gethostname()}, PID {holder})" in res.stderr
    check_exactly_once(out, reference, resumed=len(committed))
    assert not (out / LOCK).exists()


def test_an_image_removed_between_a_kill_and_the_rerun_is_ignored_and_counted(
        tmp_path: Path, archive: Path, model: Path, reference: dict) -> None:
    mine = Path(shutil.copytree(archive, tmp_path / "archive"))
    job, out = slow_job(tmp_path, mine, model), tmp_path / "out"
    proc = start(job)
    wait_for_parts(out, proc)
    kill_job(proc)
    gone = done_keys(out)[0].decode()
    (mine / gone).unlink()

    res = batchscore("score", "--job", str(job), *FAST, ranks=2)
    assert res.returncode == 0, res.stderr
    with h5py.File(out / "scores.h5", "r") as f:
        assert f["key"].asstr()[:].tolist() == [k for k in reference["key"].tolist() if k != gone]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["merge"] == {"ignored_rows": 1, "duplicate_rows": 0}


def test_an_incremental_run_killed_then_missing_an_image_still_publishes(
        tmp_path: Path, archive: Path, model: Path) -> None:
    mine = Path(shutil.copytree(archive, tmp_path / "archive"))
    job = write_job(tmp_path / "nightly.toml", input=str(mine), model=str(model), output=str(tmp_path / "out"),
                    backend="onnxruntime", incremental=True, batch_size=1, commit_every=1, threads=1, workers=0)
    proc = start(job)
    wait_for_parts(tmp_path / "out", proc)
    kill_job(proc)
    (run_dir,) = (tmp_path / "out" / RUNS).iterdir()
    gone = done_keys(run_dir)[0].decode()
    (mine / gone).unlink()

    res = batchscore("score", "--job", str(job), *FAST, ranks=2)
    assert res.returncode == 0, res.stderr
    assert f"continuing the unfinished run {run_dir.name}" in res.stderr
    with h5py.File(run_dir / "scores.h5", "r") as f:
        keys = f["key"].asstr()[:].tolist()
    assert keys == images(mine)
    with h5py.File(tmp_path / "out" / INDEX, "r") as f:
        assert gone not in f["key"].asstr()[:].tolist()  # never scored: the index does not claim it
    assert json.loads((run_dir / "summary.json").read_text())["merge"]["ignored_rows"] == 1


def test_a_killed_overwrite_run_keeps_the_previous_result_until_the_new_one_is_published(
        tmp_path: Path, archive: Path, model: Path, reference: dict) -> None:
    job, out = slow_job(tmp_path, archive, model), tmp_path / "out"
    assert batchscore("score", "--job", str(job), *FAST, ranks=2).returncode == 0
    before = {name: (out / name).read_bytes() for name in ("scores.h5", "summary.json")}

    cmd_job = write_job(tmp_path / "again.toml", input=str(archive), model=str(model), output=str(out),
                        backend="onnxruntime", batch_size=1, commit_every=1, threads=1, workers=0, overwrite=True)
    proc = start(cmd_job)
    wait_for_parts(out, proc)
    kill_job(proc)
    assert {name: (out / name).read_bytes() for name in before} == before  # untouched
    committed = done_keys(out)

    res = batchscore("score", "--job", str(job), *FAST, ranks=2)  # without --overwrite: continues that run
    assert res.returncode == 0, res.stderr
    check_exactly_once(out, reference, resumed=len(committed))
    assert json.loads((out / "summary.json").read_text())["run_id"] != json.loads(before["summary.json"])["run_id"]


def missing_paths_job(tmp_path: Path, model: Path, count: int = 150_000) -> Path:
    """A list file of missing paths: every row an error row, so the merge is a good part of the run."""
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"missing/{i:07d}.jpg\n" for i in range(count)))
    return write_job(tmp_path / "job.toml", input=str(listing), model=str(model), output=str(tmp_path / "out"),
                     backend="onnxruntime", batch_size=512, commit_every=64, threads=1, workers=1)


def start_until_merging(job: Path, out: Path) -> subprocess.Popen:
    proc = start(job)
    deadline = time.monotonic() + 240
    while not list(out.glob(".scores.h5.*.tmp")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    return proc


def test_a_kill_during_the_merge_leaves_nothing_the_rerun_does_not_clean_up(tmp_path: Path, model: Path) -> None:
    job, out = missing_paths_job(tmp_path, model), tmp_path / "out"
    kill_job(start_until_merging(job, out))
    assert list(out.glob(".scores.h5.*.tmp")) and not (out / "scores.h5").exists()

    res = batchscore("score", "--job", str(job), ranks=2)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["scores.h5", "summary.json"]
    with h5py.File(out / "scores.h5", "r") as f:
        assert len(f["key"]) == 150_000 and (f["status"][:] == 1).all()


def test_rank_0_finishes_a_merge_whose_launcher_was_killed_and_holds_the_folder_meanwhile(
        tmp_path: Path, model: Path) -> None:
    """kill -9 of mpiexec during the merge: rank 0 (in a session of its own) completes the atomic publication
    and releases the lock; it keeps the folder until then, so no second job can write into it."""
    job, out = missing_paths_job(tmp_path, model), tmp_path / "out"
    proc = start_until_merging(job, out)
    rank0 = rank_pid(proc.pid, 0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert json.loads((out / LOCK).read_text())["pid"] == rank0
    deadline = time.monotonic() + 120
    while (out / LOCK).exists():
        assert time.monotonic() < deadline, "rank 0 did not finish the merge"
        time.sleep(0.05)
    assert sorted(p.name for p in out.iterdir()) == ["scores.h5", "summary.json"]
    with h5py.File(out / "scores.h5", "r") as f:
        assert len(f["key"]) == 150_000


def test_a_kill_after_scores_h5_is_published_before_summary_json_is_resumed(
        tmp_path: Path, archive: Path, model: Path, reference: dict) -> None:
    """The folder as a kill leaves it between the two renames: the parts and their job, the new scores.h5, no
    summary.json (scores.h5 copied from a finished run of the same job)."""
    job, out = slow_job(tmp_path, archive, model), tmp_path / "out"
    proc = start(job)
    wait_for_parts(out, proc)
    kill_job(proc)
    finished = write_job(tmp_path / "finished.toml", input=str(archive), model=str(model),
                         output=str(tmp_path / "finished"), backend="onnxruntime", batch_size=16)
    assert batchscore("score", "--job", str(finished), ranks=2).returncode == 0
    shutil.copy(tmp_path / "finished" / "scores.h5", out / "scores.h5")
    committed = done_keys(out)

    res = batchscore("score", "--job", str(job), *FAST, ranks=2)
    assert res.returncode == 0, res.stderr
    check_exactly_once(out, reference, resumed=len(committed))
    with h5py.File(out / "scores.h5", "r") as f:
        assert np.array_equal(f["key"].asstr()[:], reference["key"])


def test_without_flock_the_lock_file_s_host_and_pid_decide(tmp_path: Path, nolock: Path, sample_dir: Path,
                                                           model: Path) -> None:
    """On a filesystem whose flock() fails (ENOLCK, as NFS without lockd), a live holder on this host still
    keeps a second job out, and a killed holder's lock is taken over."""
    env = {"LD_PRELOAD": str(nolock), "HDF5_USE_FILE_LOCKING": "FALSE"}
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([PYTHON, "-c", "import sys, time; from pathlib import Path; "
                               "from batchscore.outlock import OutputLock; OutputLock(Path(sys.argv[1])).acquire(); "
                               "print('held', flush=True); time.sleep(600)", str(out)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
    assert holder.stdout.readline().strip() == "held"
    job = write_job(tmp_path / "job.toml", input=str(sample_dir), model=str(model), output=str(out),
                    backend="onnxruntime", threads=1)
    res = batchscore("score", "--job", str(job), env=env)
    assert res.returncode == 2 and f"PID {holder.pid}," in res.stderr, res.stderr
    holder.kill()
    holder.wait()
    res = batchscore("score", "--job", str(job), env=env)
    assert res.returncode == 0, res.stderr
    assert f"took over the lock of a job that is gone (host {socket.gethostname()}, PID {holder.pid})" in res.stderr
