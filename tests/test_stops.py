"""Stops under real launchers: SIGINT, SIGTERM and SIGUSR1 sent to a rank, to mpiexec, or to srun.

Each run scores slowly (batches of one, one thread) with a commit interval longer than the run, so every
committed part is one the stop itself committed. After the stop: the exit status the launcher lets
through, one line for the job saying how to continue (none where the launcher drops the ranks' output),
interrupted.json, committed parts, and a rerun that finishes with each image exactly once. What each
launcher does is in the notes of each case.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from batchscore.signals import EXIT_REQUEUE
from batchscore.writer import PARTS, done_keys
from conftest import MPIEXEC, PYTHON, batchscore, copied_archive, mpi_env, write_job
from test_resume import check_exactly_once, rank_pid, reference  # noqa: F401 - the fixture, on this module's archive
from test_slurm import WHY_NOT as NO_SLURM

STOPS = ("SIGINT", "SIGTERM", "SIGUSR1")
LINE = "batchscore: interrupted: stopped by "
COPIES = 30  # × the 48 sample images: a run of batches of one lasts seconds even on a fast, idle machine


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    return copied_archive(tmp_path_factory, sample_dir, COPIES)


def slow_job(tmp_path: Path, archive: Path, model: Path, commit_every: int = 1_000_000) -> Path:
    return write_job(tmp_path / "job.toml", input=str(archive), model=str(model), output=str(tmp_path / "out"),
                     backend="onnxruntime", batch_size=1, commit_every=commit_every, threads=1, workers=1)


def launch(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a launcher with its output in `log` (read while it runs); its own session, like a terminal job."""
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True,
                            env={**mpi_env(), **(env or {})}, start_new_session=True)


def wait_until_scoring(proc: subprocess.Popen, log: Path, ranks: int = 2, timeout: float = 120) -> None:
    """Until every rank's engine is ready, then a moment longer: the ranks are mid-loop, nothing committed yet."""
    deadline = time.monotonic() + timeout
    while log.read_text().count("engine on cpu ready") < ranks:
        assert proc.poll() is None, f"ended before the stop: {log.read_text()}"
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    time.sleep(0.5)


def finish_after(proc: subprocess.Popen, log: Path) -> str:
    proc.wait(timeout=90)
    err = log.read_text()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    return err


def check_resumable(out: Path, job: Path, reference: dict, signame: str) -> None:
    """interrupted.json names the signal, the stop committed work, and a rerun finishes exactly once."""
    state = json.loads((out / PARTS / "interrupted.json").read_text())
    assert state["reason"].startswith(f"{signame} on rank "), state
    committed = done_keys(out)
    assert 0 < len(committed) < len(reference["key"])  # the commit interval was never reached: the stop committed
    assert state["scored_this_run"] in (None, len(committed))  # None: recorded at once, before a launcher's kill
    res = batchscore("score", "--job", str(job), "--batch-size", "16", ranks=2)
    assert res.returncode == 0, res.stderr
    check_exactly_once(out, reference, resumed=len(committed))


@pytest.mark.parametrize("target", ["rank 0", "rank 1"])
@pytest.mark.parametrize("signame", STOPS)
def test_a_signal_to_one_rank_stops_the_job_with_one_line_and_75(tmp_path: Path, archive: Path, model: Path,
                                                                  reference: dict, signame: str, target: str) -> None:
    """Any rank: it commits at once, tells the others, every rank stops after its batch; mpiexec passes 75 on."""
    job, log = slow_job(tmp_path, archive, model), tmp_path / "stderr.txt"
    proc = launch([MPIEXEC, "--oversubscribe", "-n", "2", PYTHON, "-m", "batchscore", "score", "--job", str(job)], log)
    wait_until_scoring(proc, log)
    rank = int(target.split()[1])
    os.kill(rank_pid(proc.pid, rank), getattr(signal, signame))
    err = finish_after(proc, log)
    assert proc.returncode == EXIT_REQUEUE, err
    lines = [line for line in err.splitlines() if line.startswith("batchscore:")]
    assert lines == [f"{LINE}{signame} on rank {rank}; finished batches are committed in {tmp_path / 'out' / PARTS}; "
                     "rerun the same command to continue"], err
    check_resumable(tmp_path / "out", job, reference, signame)


@pytest.mark.parametrize("signame", STOPS)
def test_a_signal_to_mpiexec(tmp_path: Path, archive: Path, model: Path, reference: dict, signame: str) -> None:
    """mpiexec forwards SIGUSR1 and waits: 75 and the line. SIGINT and SIGTERM it forwards too, but then kills the
    ranks within a second and exits 1; Open MPI 5 drops what they print after
    the signal; SIGINT reaches the ranks as SIGTERM. The ranks' first act on the signal commits their finished
    batches and records the stop."""
    job, log = slow_job(tmp_path, archive, model), tmp_path / "stderr.txt"
    proc = launch([MPIEXEC, "--oversubscribe", "-n", "2", PYTHON, "-m", "batchscore", "score", "--job", str(job)], log)
    wait_until_scoring(proc, log)
    os.kill(proc.pid, getattr(signal, signame))
    err = finish_after(proc, log)
    lines = [line for line in err.splitlines() if line.startswith("batchscore:")]
    if signame == "SIGUSR1":
        assert proc.returncode == EXIT_REQUEUE, err
        assert len(lines) == 1 and lines[0].startswith(f"{LINE}SIGUSR1 on rank "), err
    else:
        assert proc.returncode == 1, err  # Open MPI's own status: it killed the ranks
        assert len(lines) <= 1, err  # one line where the launcher still forwards it (Open MPI 4), else none
    # Open MPI passes SIGINT on to the ranks as SIGTERM
    check_resumable(tmp_path / "out", job, reference, "SIGUSR1" if signame == "SIGUSR1" else "SIGTERM")


def slurm_rank_pid(tag: str, rank: int, timeout: float = 60) -> int:
    """The process of Slurm task `rank` of the step whose environment holds `tag` (tasks are slurmstepd's)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for environ in Path("/proc").glob("[0-9]*/environ"):
            try:
                env = environ.read_bytes().split(b"\0")
            except OSError:
                continue
            if f"BATCHSCORE_TEST_TAG={tag}".encode() in env and f"SLURM_PROCID={rank}".encode() in env \
                    and b"PMIX_RANK=" + str(rank).encode() in env:
                return int(environ.parent.name)
        time.sleep(0.1)
    raise AssertionError(f"task {rank} of {tag} not found")


@pytest.mark.skipif(bool(NO_SLURM), reason=NO_SLURM or "")
@pytest.mark.parametrize("target", ["srun SIGUSR1", "rank1 SIGTERM", "scancel SIGTERM", "scancel SIGINT",
                                    "srun SIGTERM"])
def test_a_signal_under_srun(tmp_path: Path, archive: Path, model: Path, reference: dict, target: str) -> None:
    """srun forwards SIGUSR1 and passes the ranks' 75 on, as it does when one rank or `scancel --signal` is
    signalled. SIGTERM to srun itself kills the step at once (SIGKILL: nothing to catch, status 137): only
    parts committed before remain, so that case commits every batch."""
    who, signame = target.split()
    killed = who == "srun" and signame == "SIGTERM"
    job = slow_job(tmp_path, archive, model, commit_every=1 if killed else 1_000_000)
    log, tag = tmp_path / "stderr.txt", uuid.uuid4().hex
    srun = shutil.which("srun")
    proc = launch([srun, "--mpi=pmix", "-n", "2", "--cpus-per-task=1", f"--job-name=stops-{tag[:8]}", PYTHON, "-m",
                   "batchscore", "score", "--job", str(job)], log,
                  env={"BATCHSCORE_TEST_TAG": tag, "PATH": f"{Path(PYTHON).parent}{os.pathsep}{os.environ['PATH']}"})
    wait_until_scoring(proc, log)
    if who == "srun":
        os.kill(proc.pid, getattr(signal, signame))
    elif who == "rank1":
        os.kill(slurm_rank_pid(tag, 1), getattr(signal, signame))
    else:
        subprocess.run(["scancel", f"--signal={signame.removeprefix('SIG')}", f"--name=stops-{tag[:8]}"], check=True,
                       timeout=30)
    err = finish_after(proc, log)
    out = tmp_path / "out"
    lines = [line for line in err.splitlines() if line.startswith("batchscore:")]
    if killed:
        assert proc.returncode == 137 and lines == [] and "forcing job termination" in err, err
        committed = done_keys(out)
        assert len(committed) and not (out / PARTS / "interrupted.json").exists()
        res = batchscore("score", "--job", str(job), "--batch-size", "16", ranks=2)
        assert res.returncode == 0, res.stderr
        check_exactly_once(out, reference, resumed=len(committed))
        return
    assert proc.returncode == EXIT_REQUEUE, err
    assert len(lines) == 1 and lines[0].startswith(f"{LINE}{signame} on rank "), err
    check_resumable(out, job, reference, signame)
