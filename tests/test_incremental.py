"""Incremental runs for real: a growing archive scored night after night into one output folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from batchscore.incremental import CHANGES, INDEX, RUNS
from batchscore.signals import EXIT_REQUEUE
from batchscore.sources import IMAGE_EXTENSIONS
from conftest import batchscore, load_make_sample, write_job
from test_resume import start, wait_for_parts

make_sample = load_make_sample()


@pytest.fixture
def archive(tmp_path: Path, sample_dir: Path) -> Path:
    """A private copy of the 48-image sample, free to grow, change and shrink."""
    return Path(shutil.copytree(sample_dir, tmp_path / "archive"))


def nightly(tmp_path: Path, archive: Path, model: Path, **values: object) -> Path:
    values = {"backend": "onnxruntime", "incremental": True, "batch_size": 8, "threads": 1, **values}
    return write_job(tmp_path / "nightly.toml", input=str(archive), model=str(model), output=str(tmp_path / "out"),
                     **values)


def run_night(job: Path, *args: str, ranks: int = 0) -> tuple[Path, dict]:
    """One incremental run; returns its run folder and summary."""
    res = batchscore("score", "--job", str(job), *args, ranks=ranks)
    assert res.returncode == 0, res.stderr
    runs = sorted((job.parent / "out" / RUNS).iterdir())
    return runs[-1], json.loads((runs[-1] / "summary.json").read_text())


def scores(run_dir: Path) -> dict[str, np.ndarray]:
    with h5py.File(run_dir / "scores.h5", "r") as f:
        if "topk_index" not in f:
            return {}
        return dict(zip(f["key"].asstr()[:], f["topk_index"][:]))


def index(out: Path) -> dict[str, dict]:
    with h5py.File(out / INDEX, "r") as f:
        columns = {name: (f[name].asstr()[:] if f[name].dtype.kind == "O" else f[name][:]) for name in f}
    return {k: {name: col[i] for name, col in columns.items()} for i, k in enumerate(columns["key"])}


def images(archive: Path) -> list[str]:
    return sorted(p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.suffix in IMAGE_EXTENSIONS)


def test_ten_added_one_changed_two_removed_scores_eleven_and_marks_two(tmp_path: Path, archive: Path,
                                                                       model: Path) -> None:
    job = nightly(tmp_path, archive, model)
    first, summary = run_night(job)
    original = images(archive)
    assert set(scores(first)) == set(original) and summary["incremental"]["new"] == len(original)

    added = make_sample.generate(archive, 10, seed=0, start=len(original))  # new images land
    changed, donor = original[0], original[-1]
    (archive / changed).write_bytes((archive / donor).read_bytes())  # different bytes under an old name
    os.utime(archive / changed, ns=(1, 1))  # a distinct mtime even on a coarse-grained filesystem
    removed = original[1:3]
    for key in removed:
        (archive / key).unlink()

    second, summary = run_night(job, ranks=2)
    second_scores = scores(second)
    assert set(second_scores) == set(added) | {changed}  # 11 scored, nothing else
    counts = summary["incremental"]
    assert (counts["new"], counts["changed"], counts["removed"], counts["scored"]) == (10, 1, 2, 11)
    np.testing.assert_array_equal(second_scores[changed], scores(first)[donor])  # scored from its new bytes

    idx = index(tmp_path / "out")
    assert len(idx) == len(original) + 10
    assert {k for k, row in idx.items() if row["removed"]} == set(removed)
    assert all(idx[k]["removed"] == second.name and idx[k]["run"] == first.name for k in removed)  # kept, marked
    assert {k for k, row in idx.items() if row["run"] == second.name} == set(added) | {changed}
    with h5py.File(second / CHANGES, "r") as f:
        assert sorted(f["removed"].asstr()[:]) == sorted(removed)

    third, summary = run_night(job)  # nothing happened since: nothing scored, index unchanged
    assert scores(third) == {} and summary["incremental"]["scored"] == 0
    assert {k: row["run"] for k, row in index(tmp_path / "out").items()} == {k: row["run"] for k, row in idx.items()}

    shutil.copy(archive / donor, archive / removed[0])  # a removed image comes back
    fourth, summary = run_night(job)
    assert set(scores(fourth)) == {removed[0]} and summary["incremental"]["new"] == 1
    assert index(tmp_path / "out")[removed[0]]["removed"] == ""


def test_manifest_hash_keeps_scores_of_touched_files(tmp_path: Path, archive: Path, model: Path) -> None:
    job = nightly(tmp_path, archive, model, manifest_hash=True)
    first, _ = run_night(job)
    touched = images(archive)[5]
    os.utime(archive / touched, ns=(2, 2))  # new mtime, same bytes
    second, summary = run_night(job)
    assert scores(second) == {}
    assert summary["incremental"]["touched"] == 1 and summary["incremental"]["scored"] == 0
    row = index(tmp_path / "out")[touched]
    assert row["mtime_ns"] == 2 and row["run"] == first.name and len(row["sha256"]) == 64

    job = nightly(tmp_path, archive, model, manifest_hash=False)  # without hashes a new mtime means rescore
    os.utime(archive / touched, ns=(3, 3))
    third, summary = run_night(job)
    assert set(scores(third)) == {touched} and summary["incremental"]["changed"] == 1


def test_a_full_run_into_the_incremental_store_is_refused_before_any_work(tmp_path: Path, archive: Path,
                                                                          model: Path) -> None:
    """A nightly job that lost its flag would score the whole archive again, beside the index: exit 2 instead."""
    run_night(nightly(tmp_path, archive, model))
    before = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*"))
    res = batchscore("score", "--job", str(nightly(tmp_path, archive, model, incremental=False)), "--overwrite")
    assert res.returncode == 2 and "pass --incremental" in res.stderr and INDEX in res.stderr
    assert sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*")) == before


def test_other_settings_rescore_everything(tmp_path: Path, archive: Path, model: Path) -> None:
    run_night(nightly(tmp_path, archive, model))
    job = nightly(tmp_path, archive, model, top_k=3, incremental=False)
    res = batchscore("score", "--job", str(job), "--incremental")  # the flag does what the job key does
    assert res.returncode == 0 and "every image is rescored" in res.stderr
    latest = sorted((tmp_path / "out" / RUNS).iterdir())[-1]
    assert set(scores(latest)) == set(images(archive))


def test_a_stopped_incremental_run_is_continued_not_restarted(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    archive = tmp_path / "archive"
    for i in range(8):  # enough one-image batches that the stop lands mid-run
        shutil.copytree(sample_dir, archive / f"copy{i}", ignore=shutil.ignore_patterns("*.csv"))
    job = nightly(tmp_path, archive, model, batch_size=1, commit_every=1)
    proc = start(job)
    wait_for_parts(tmp_path / "out", proc)
    os.kill(proc.pid, signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_REQUEUE, err
    (stopped,) = (tmp_path / "out" / RUNS).iterdir()
    assert not (tmp_path / "out" / INDEX).exists()  # the index changes only when a run is complete

    res = batchscore("score", "--job", str(job), "--batch-size", "16", ranks=2)
    assert res.returncode == 0, res.stderr
    assert f"continuing the unfinished run {stopped.name}" in res.stderr
    assert [p.name for p in (tmp_path / "out" / RUNS).iterdir()] == [stopped.name]
    with h5py.File(stopped / "scores.h5", "r") as f:
        keys = f["key"].asstr()[:].tolist()
    assert keys == images(archive)  # every image once
    assert {row["run"] for row in index(tmp_path / "out").values()} == {stopped.name}


def test_tar_shard_that_grows_scores_only_its_new_members(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    files = sorted(p for p in sample_dir.rglob("*") if p.suffix in IMAGE_EXTENSIONS)
    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as tar:
        for p in files[:5]:
            tar.add(p, arcname=p.name)
    job = nightly(tmp_path, shard, model)
    first, _ = run_night(job)
    with tarfile.open(shard, "a") as tar:  # members appended; the first five keep their offsets and mtimes
        for p in files[5:7]:
            tar.add(p, arcname=p.name)
    second, summary = run_night(job)
    assert set(scores(second)) == {f"shard.tar:{p.name}" for p in files[5:7]}
    assert summary["incremental"]["new"] == 2 and summary["incremental"]["changed"] == 0
