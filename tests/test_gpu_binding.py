"""GPU binding with real ranks under mpiexec: local rank → GPU modulo the visible GPUs, Slurm-style
one-GPU-per-task binding, and the error (or explicit sharing) when ranks outnumber GPUs.

This machine has no GPU driver, so each rank is told the node's GPU list (`installed`, what
nvidia-smi would list); everything else (CUDA_VISIBLE_DEVICES, ranks, the collective check) is real.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from batchscore.gpu import CUDA_CONNECTIONS, cuda_defaults, driver_version, visible_devices, visible_gpu_count
from conftest import MPIEXEC, PYTHON, ROOT, mpi_env

WORKER = str(Path(__file__).with_name("gpu_cache_worker.py"))


def ranks(apps: list[tuple[int, dict[str, str]]], task: dict) -> list[dict]:
    """mpiexec with one app context per (ranks, extra environment); the JSON line of every rank."""
    cmd = [MPIEXEC, "--oversubscribe"]
    for i, (n, env) in enumerate(apps):
        cmd += ([":"] if i else []) + ["-n", str(n), "env", *(f"{k}={v}" for k, v in env.items()),
                                       PYTHON, WORKER, "bind", json.dumps(task)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=mpi_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return sorted(rows, key=lambda r: r["rank"])


def test_visible_devices_follow_cuda_visible_devices() -> None:
    assert visible_devices({}, installed=["0", "1"]) == ["0", "1"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "1"}, installed=["0", "1"]) == ["1"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "GPU-abc, 0"}, installed=["0"]) == ["GPU-abc", "0"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "0,-1,1"}, installed=["0", "1"]) == ["0"]  # CUDA stops at -1
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}, installed=["0"]) == []
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "0,1"}, installed=[]) == []  # no driver: no GPU


def test_no_gpu_on_this_machine_means_no_binding() -> None:
    assert visible_gpu_count() == 0
    rows = ranks([(2, {})], {"share": False, "installed": None})
    assert [(r["rank"], r["binding"]) for r in rows] == [(0, None), (1, None)]


def test_cuda_defaults_keep_what_the_environment_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_DEVICE_MAX_CONNECTIONS", "")  # so that monkeypatch removes what cuda_defaults sets
    monkeypatch.delenv("CUDA_DEVICE_MAX_CONNECTIONS")
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    cuda_defaults()
    assert os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] == CUDA_CONNECTIONS
    assert os.environ["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"


def test_ranks_get_more_cuda_work_queues_unless_the_environment_sets_them() -> None:
    """The GPU decoder's streams must not share a hardware queue with the engine's (gpu.CUDA_CONNECTIONS)."""
    rows = ranks([(1, {}), (1, {"CUDA_DEVICE_MAX_CONNECTIONS": "4"})], {"share": False, "installed": ["0", "1"]})
    assert [r["connections"] for r in rows] == [CUDA_CONNECTIONS, "4"]


def test_local_ranks_take_distinct_gpus() -> None:
    rows = ranks([(4, {"CUDA_VISIBLE_DEVICES": "2,3,5,7"})], {"share": False, "installed": ["0", "1", "2", "3", "4", "5", "6", "7"]})
    assert [r["binding"]["index"] for r in rows] == [0, 1, 2, 3]
    assert [r["binding"]["physical"] for r in rows] == ["2", "3", "5", "7"]
    assert all(r["binding"]["visible"] == 4 and not r["binding"]["shared"] for r in rows)


def test_slurm_per_task_binding_is_device_zero_of_each_task() -> None:
    rows = ranks([(1, {"CUDA_VISIBLE_DEVICES": "0"}), (1, {"CUDA_VISIBLE_DEVICES": "1"})],
                 {"share": False, "installed": ["0", "1"]})
    assert [(r["binding"]["index"], r["binding"]["physical"]) for r in rows] == [(0, "0"), (0, "1")]


def test_more_ranks_than_gpus_fails_on_every_rank_with_the_fix() -> None:
    rows = ranks([(3, {"CUDA_VISIBLE_DEVICES": "0,1"})], {"share": False, "installed": ["0", "1"]})
    assert len(rows) == 3 and all(r["type"] == "GpuError" for r in rows)
    assert "3 ranks on node" in rows[0]["error"] and "2 distinct GPU(s)" in rows[0]["error"]
    assert "share_gpus = true" in rows[0]["error"]


def test_sharing_when_the_job_allows_it() -> None:
    rows = ranks([(3, {"CUDA_VISIBLE_DEVICES": "0,1"})], {"share": True, "installed": ["0", "1"]})
    assert [(r["binding"]["index"], r["binding"]["shared"]) for r in rows] == [(0, True), (1, False), (0, True)]


@pytest.mark.parametrize("value", ["true", "false"])
def test_share_gpus_is_a_job_key(tmp_path: Path, value: str) -> None:
    from batchscore.config import load_job

    job = tmp_path / "job.toml"
    job.write_text(f'input = "x"\nmodel = "m.onnx"\noutput = "o"\nshare_gpus = {value}\ncompile = "cudagraph"\n')
    loaded = load_job(job)
    assert loaded.share_gpus is (value == "true") and loaded.compile == "cudagraph"


@pytest.mark.parametrize("text,version", [
    ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U16)  "
     "Thu Sep 18 2026\nGCC version:  gcc version 12.2.0\n", "580.159.04"),
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n", "535.104.05"),
])
def test_driver_version_from_the_kernel_module_file(tmp_path: Path, text: str, version: str) -> None:
    """The cache keys' driver version comes from /proc's file in both drivers' formats, no nvidia-smi started."""
    proc = tmp_path / "version"
    proc.write_text(text)
    assert driver_version(proc) == version


def test_driver_version_without_a_driver(tmp_path: Path) -> None:
    assert driver_version(tmp_path / "missing") == ""  # no /proc file and no nvidia-smi on this machine
