"""Parquet export of a real scoring run, read back with pyarrow and matched to scores.h5 row for row."""

from __future__ import annotations

import math
import shutil
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pytest

from batchscore.export import export_parquet
from conftest import CLASSES, batchscore, write_job

pa = pytest.importorskip("pyarrow", reason="pyarrow not installed (pip install 'batchscore[parquet]')")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path, model: Path) -> Path:
    """The sample plus one corrupt image scored with class names, so there are ok and error rows."""
    root = tmp_path_factory.mktemp("export")
    bad = root / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    job = write_job(root / "job.toml", input=[str(sample_dir), str(bad)], model=str(model), output=str(root / "out"),
                    classes=str(CLASSES), batch_size=16, top_k=3, workers=0, threads=1)
    res = batchscore("score", "--job", str(job))
    assert res.returncode == 0, res.stdout + res.stderr
    return root / "out"


def read_h5(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {"key": f["key"].asstr()[:].tolist(), "idx": f["topk_index"][:], "score": f["topk_score"][:],
                "status": f["status"][:], "error": f["error"].asstr()[:].tolist(), "attrs": dict(f.attrs)}


def test_parquet_matches_scores_h5_row_for_row(results: Path) -> None:
    res = batchscore("export", "--format", "parquet", str(results))
    assert res.returncode == 0, res.stdout + res.stderr
    path = Path(res.stdout.strip())
    assert path == results / "scores.parquet"
    h5 = read_h5(results / "scores.h5")
    classes = list(h5["attrs"]["classes"])
    rows = pq.read_table(path).to_pylist()
    assert [r["key"] for r in rows] == h5["key"]
    assert {r["status"] for r in rows} == {"ok", "error"}  # the corrupt image is an error row
    created = datetime.fromisoformat(h5["attrs"]["created"])
    for i, row in enumerate(rows):
        if h5["status"][i] == 0:
            assert (row["status"], row["error"]) == ("ok", None)
            assert row["topk_class"] == [classes[j] for j in h5["idx"][i]]
            assert row["topk_score"] == h5["score"][i].tolist()  # float32 both sides: exact
        else:
            assert (row["status"], row["error"]) == ("error", h5["error"][i]) and row["error"]
            assert row["topk_class"] is None and row["topk_score"] is None
        for name in ("model_sha256", "precision", "backend", "run_id"):
            assert row[name] == h5["attrs"][name]
        assert row["created"] == created


def test_indices_without_classes_chunked_and_atomic(results: Path, tmp_path: Path) -> None:
    shutil.copy(results / "scores.h5", tmp_path / "scores.h5")
    with h5py.File(tmp_path / "scores.h5", "a") as f:
        del f.attrs["classes"]
    out = export_parquet(tmp_path, tmp_path / "table.parquet", chunk_rows=7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.h5", "table.parquet"]  # no temporary left
    h5 = read_h5(tmp_path / "scores.h5")
    meta = pq.ParquetFile(out)
    assert meta.num_row_groups == math.ceil(len(h5["key"]) / 7)
    assert meta.schema_arrow.field("topk_class").type.value_type == pa.int32()
    table = pq.read_table(out).to_pydict()
    ok = h5["status"] == 0
    assert table["topk_class"] == [row.tolist() if good else None for row, good in zip(h5["idx"], ok)]
    assert np.array_equal(np.array([s for s in table["topk_score"] if s is not None], np.float32), h5["score"][ok])


def test_missing_results_is_a_usage_error(tmp_path: Path) -> None:
    res = batchscore("export", "--format", "parquet", str(tmp_path))
    assert res.returncode == 2
    assert f"{tmp_path / 'scores.h5'} not found" in res.stderr
