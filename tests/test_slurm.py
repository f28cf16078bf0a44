"""The scripts in slurm/ submitted to a real Slurm whose node is this machine (CPU only, ONNX Runtime).

CI sets one up with `.ci/slurm-setup` (Debian's slurm-wlm, munge, a one-node slurm.conf). Without
`sbatch`, or when no Slurm node runs on this host (a login node's files may not be on the compute
nodes), these tests skip and say why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import h5py
import pytest

from batchscore.writer import PARTS
from conftest import PYTHON, ROOT, mpi_env, write_job


def local_cluster() -> tuple[str, int]:
    """('', CPUs of this host's Slurm node) when a local Slurm answers, else (why not, 0)."""
    if shutil.which("sbatch") is None:
        return "sbatch not found (install Slurm, e.g. `.ci/slurm-setup` as root on Debian)", 0
    try:
        res = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %c %t"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo did not answer: {exc}", 0
    if res.returncode != 0:
        return f"no Slurm controller answers: {res.stderr.strip()}", 0
    host = socket.gethostname().split(".")[0]
    for line in res.stdout.splitlines():
        node, cpus, state = line.split()
        if node == host and state.rstrip("*~#") in ("idle", "mix", "alloc"):
            return "", int(cpus)
    return f"no usable Slurm node on this host ({host}); sinfo: {res.stdout.strip() or 'no nodes'}", 0


WHY_NOT, CPUS = local_cluster()
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=WHY_NOT)
RANKS = min(2, CPUS)
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
SBATCH = ["sbatch", "--gpus-per-task=0", f"--ntasks-per-node={RANKS}", "--cpus-per-task=1", "--time=10"]


def slurm_env(**extra: str) -> dict[str, str]:
    """The job inherits this environment: our Python, and our MPI launcher first on PATH."""
    env = mpi_env()
    env.update(BATCHSCORE_PYTHON=PYTHON, PATH=f"{Path(PYTHON).parent}{os.pathsep}{env['PATH']}", **extra)
    return env


def check_result(out: Path, expected: int) -> dict:
    with h5py.File(out / "scores.h5", "r") as f:
        keys = f["key"].asstr()[:].tolist()
        assert (f["status"][:] == 0).all()
    assert len(keys) == expected and keys == sorted(set(keys))
    return json.loads((out / "summary.json").read_text())


def submit(script: str, *args: str, log: Path, env: dict[str, str]) -> str:
    res = subprocess.run([*SBATCH, "--parsable", f"--output={log}", script, *args], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().split(";")[0]


def job_state(job_id: str) -> dict[str, str]:
    res = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=15)
    return dict(re.findall(r"(\w+)=(\S*)", res.stdout))


def wait_until_done(job_id: str, timeout: float = 300) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while (state := job_state(job_id)).get("JobState") not in FINAL_STATES:
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    return state


@pytest.mark.parametrize("launcher", ["srun", "mpirun"])
def test_score_sbatch_on_a_real_slurm(tmp_path: Path, sample_dir: Path, model: Path, launcher: str) -> None:
    job = write_job(tmp_path / "job.toml", input=str(sample_dir), model=str(model), output=str(tmp_path / "unused"))
    job_id = submit("slurm/score.sbatch", str(job), str(tmp_path / "out"), "--backend", "onnxruntime",
                    log=tmp_path / "slurm-%j.out", env=slurm_env(BATCHSCORE_LAUNCHER=launcher))
    state = wait_until_done(job_id)
    log = (tmp_path / f"slurm-{job_id}.out").read_text()
    assert state["JobState"] == "COMPLETED" and state["ExitCode"] == "0:0", log
    assert f"launcher {launcher}" in log
    summary = check_result(tmp_path / "out", len(list(sample_dir.glob("*/*.*"))))
    assert summary["ranks"] == RANKS and summary["backend"] == "onnxruntime"
    assert [r["threads"] for r in summary["per_rank"]] == [1] * RANKS  # from SLURM_CPUS_PER_TASK


def test_nightly_sbatch_stops_on_usr1_requeues_itself_and_finishes(tmp_path: Path, sample_dir: Path,
                                                                   model: Path) -> None:
    """What `--signal=B:USR1@120` does before the walltime, sent now with `scancel --signal=USR1 --batch`; the ranks
    decode in processes (decode/procs.py), which the signal reaches too and must not stop."""
    archive = tmp_path / "archive"
    for i in range(8):
        shutil.copytree(sample_dir, archive / f"copy{i}", ignore=shutil.ignore_patterns("*.csv"))
    total = len(list(archive.glob("*/*/*.*")))
    job = write_job(tmp_path / "nightly.toml", input=str(archive), model=str(model), output=str(tmp_path / "unused"),
                    backend="onnxruntime", batch_size=1, commit_every=1, workers=2, worker_kind="process")
    out = tmp_path / "out"
    job_id = submit("slurm/nightly.sbatch", str(job), str(out), log=tmp_path / "nightly-%j.out", env=slurm_env())
    deadline = time.monotonic() + 120
    while len(list(out.glob(f"runs/*/{PARTS}/*.h5"))) < 8:
        assert time.monotonic() < deadline, job_state(job_id)
        time.sleep(0.1)
    subprocess.run(["scancel", "--signal=USR1", "--batch", job_id], check=True, timeout=15)

    state = wait_until_done(job_id)  # the requeued job first waits out the controller's cred_expire
    log = (tmp_path / f"nightly-{job_id}.out").read_text()
    assert state["JobState"] == "COMPLETED" and state["Restarts"] == "1", log
    assert "requeueing job" in log and "continuing the unfinished run" in log
    assert "a decode process failed" not in log and "decoding in 2 threads" not in log
    (run,) = (out / "runs").iterdir()
    summary = check_result(run, total)
    assert 0 < summary["images"]["resumed_from_earlier_runs"] < total  # the second start continued the first
    assert [r["worker_kind"] for r in summary["per_rank"]] == ["process"] * RANKS
