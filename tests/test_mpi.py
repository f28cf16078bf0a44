"""Real ranks under mpiexec: identical results for any rank count, and no hangs when a rank fails."""

import json
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from batchscore.comm import Progress, placement
from conftest import MPIEXEC, PYTHON, batchscore, mpi_env, write_job


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path, model: Path) -> dict[int, Path]:
    """The same job scored with 1, 2 and 4 ranks: two decode threads, two decode processes (decode/procs.py) and
    decode threads sized from the cores, a rank."""
    root = tmp_path_factory.mktemp("ranks")
    out = {}
    for n, workers, kind in ((1, 2, "thread"), (2, 2, "process"), (4, 0, "thread")):
        job = write_job(root / f"job{n}.toml", input=str(sample_dir), model=str(model), output=str(root / f"out{n}"),
                        batch_size=5, top_k=5, workers=workers, worker_kind=kind, threads=1, commit_every=2)
        res = batchscore("score", "--job", str(job), ranks=n)
        assert res.returncode == 0, res.stdout + res.stderr
        out[n] = root / f"out{n}"
    return out


def test_same_scores_h5_for_1_2_4_ranks(runs: dict[int, Path]) -> None:
    files = {n: h5py.File(p / "scores.h5", "r") for n, p in runs.items()}
    ref = files[1]
    for n in (2, 4):
        f = files[n]
        assert f["key"][:].tolist() == ref["key"][:].tolist()
        np.testing.assert_array_equal(f["status"][:], ref["status"][:])
        np.testing.assert_array_equal(f["topk_index"][:, 0], ref["topk_index"][:, 0])
        np.testing.assert_allclose(f["topk_score"][:], ref["topk_score"][:], atol=1e-5)
        assert f.attrs["ranks"] == n


def test_summary_has_every_rank_and_balanced_shares(runs: dict[int, Path], sample_dir: Path) -> None:
    total = len(list(sample_dir.glob("*/*.*")))
    for n, path in runs.items():
        summary = json.loads((path / "summary.json").read_text())
        per_rank = summary["per_rank"]
        assert [r["rank"] for r in per_rank] == list(range(n))
        counts = [r["images"] for r in per_rank]
        assert sum(counts) == total and max(counts) - min(counts) <= 1
        assert all(r["images_per_s"] > 0 and r["host"] for r in per_rank)
        assert [r["worker_kind"] for r in per_rank] == ["process" if n == 2 else "thread"] * n
        assert summary["ranks"] == n and summary["aggregate_images_per_s"] > 0


FAILING_RANK = """
import sys
from batchscore.engines.onnxrt import OnnxRuntimeEngine
from mpi4py import MPI
original = OnnxRuntimeEngine._infer
def planted_fault(self, batch):  # a fault planted on rank 1 only; the abort path is what is tested
    if MPI.COMM_WORLD.rank == 1:
        raise RuntimeError("planted failure on rank 1")
    return original(self, batch)
OnnxRuntimeEngine._infer = planted_fault
from batchscore.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_one_failing_rank_stops_the_whole_job_promptly(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    job = write_job(tmp_path / "job.toml", input=str(sample_dir), model=str(model), output=str(tmp_path / "out"),
                    batch_size=2, workers=0, threads=1)
    script = tmp_path / "fail.py"
    script.write_text(FAILING_RANK)
    start = time.monotonic()
    res = subprocess.run([MPIEXEC, "-n", "2", PYTHON, str(script), "score", "--job", str(job)],
                         capture_output=True, text=True, timeout=120, env=mpi_env())
    elapsed = time.monotonic() - start
    assert res.returncode != 0
    assert elapsed < 30, f"took {elapsed:.1f} s to stop"
    assert "rank 1" in res.stderr and "planted failure on rank 1" in res.stderr
    assert not (tmp_path / "out" / "scores.h5").exists()  # nothing that looks complete


def test_placement_and_progress_with_comm_self() -> None:
    """The same functions work without mpiexec (COMM_SELF) as under it."""
    where = placement(MPI.COMM_SELF)
    assert (where.rank, where.size, where.local_rank, where.local_size) == (0, 1, 0, 1)
    progress = Progress(MPI.COMM_SELF, total=10, enabled=False)
    progress.update(4)
    progress.close(10)
    assert progress.counts == [10] and progress.finished == [True]
