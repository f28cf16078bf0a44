"""The plan's checks run cheapest first (plan.py): a clash in the output folder stops the job before a
reduced-precision variant is built or calibrated, and before the model or the input is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchscore.precision import VARIANTS_DIR
from conftest import batchscore, write_job


@pytest.fixture
def scored(tmp_path: Path, sample_dir: Path, model: Path) -> tuple[Path, Path]:
    """(job file, output folder) of a job scored once, so that its result is in the way of the next run."""
    out = tmp_path / "out"
    job = write_job(tmp_path / "job.toml", input=str(sample_dir), model=str(model), output=str(out), batch_size=8,
                    workers=1, threads=1)
    assert batchscore("score", "--job", str(job)).returncode == 0
    return job, out


def test_a_result_in_the_way_stops_the_job_before_int8_calibration(scored: tuple[Path, Path]) -> None:
    job, out = scored
    res = batchscore("score", "--job", str(job), "--precision", "int8")
    assert res.returncode == 2 and res.stderr.strip() == (
        f"batchscore: error: {out} already holds a result (scores.h5, summary.json); "
        "pass --overwrite to replace it or choose another --output")
    assert "int8 variant" not in res.stdout + res.stderr and not (out / VARIANTS_DIR).exists()


def test_a_result_in_the_way_is_named_before_a_missing_model_or_input(tmp_path: Path,
                                                                      scored: tuple[Path, Path]) -> None:
    job, out = scored
    res = batchscore("score", "--job", str(job), "--model", str(tmp_path / "missing.onnx"),
                     "--input", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "already holds a result" in res.stderr, res.stderr
    res = batchscore("score", "--job", str(job), "--model", str(tmp_path / "missing.onnx"), "--overwrite")
    assert res.returncode == 2 and "model not found" in res.stderr, res.stderr
    assert (out / "scores.h5").is_file()  # the failed --overwrite run replaced nothing
