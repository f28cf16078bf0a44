"""Part files and the merge: exactly-once or nothing published."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from batchscore.writer import PARTS, MergeError, PartWriter, done_keys, merge


def add(writer: PartWriter, keys: list[str], errors: list[str] | None = None) -> None:
    n = len(keys)
    idx = np.arange(n * 2, dtype=np.int32).reshape(n, 2)
    writer.add(keys, idx, np.full((n, 2), 0.5, np.float32), errors or [""] * n,
               {"logits": np.arange(n * 3, dtype=np.float32).reshape(n, 3)})


def test_parts_from_several_ranks_merge_in_key_order(tmp_path: Path) -> None:
    a, b = PartWriter(tmp_path, "run1", 0), PartWriter(tmp_path, "run1", 1)
    add(a, ["a", "c"])
    a.commit()
    add(b, ["b", "d"], errors=["", "corrupt image"])
    b.commit()
    add(a, ["e"])
    a.commit()
    assert done_keys(tmp_path).tolist() == [b"a", b"b", b"c", b"d", b"e"]
    merged = merge(tmp_path, ["a", "b", "c", "d", "e"], {"model_sha256": "x" * 64})
    assert merged == {"rows": 5, "ignored_rows": 0, "duplicate_rows": 0}
    with h5py.File(tmp_path / "scores.h5") as f:
        assert f["key"].asstr()[:].tolist() == ["a", "b", "c", "d", "e"]
        assert f["status"][:].tolist() == [0, 0, 0, 1, 0]
        assert f["error"].asstr()[3] == "corrupt image"
        assert f["topk_index"][:, 0].tolist() == [0, 0, 2, 2, 0]
        assert f["outputs/logits"].shape == (5, 3) and f.attrs["model_sha256"] == "x" * 64
    assert not list(tmp_path.glob(".*.tmp")) and not list((tmp_path / PARTS).glob(".*.tmp"))


def test_merge_publishes_nothing_when_rows_are_missing(tmp_path: Path) -> None:
    w = PartWriter(tmp_path, "run1", 0)
    add(w, ["a", "b"])
    w.commit()
    with pytest.raises(MergeError, match="lack 1 of 3 inputs"):
        merge(tmp_path, ["a", "b", "c"], {})
    assert not (tmp_path / "scores.h5").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_merge_ignores_rows_of_keys_gone_and_keeps_the_first_of_a_duplicate(tmp_path: Path) -> None:
    """Parts of an image removed since it was scored are ignored; a key committed twice (two runs, or twice in
    one part) keeps the row of the first part in name order, whatever the order the files were written in."""
    later = PartWriter(tmp_path, "run2", 0)
    add(later, ["b", "c", "gone"], errors=["", "from run2", ""])
    later.commit()
    first = PartWriter(tmp_path, "run1", 1)
    add(first, ["a", "c", "c"], errors=["", "from run1", "again in run1"])
    first.commit()
    merged = merge(tmp_path, ["a", "b", "c"], {})
    assert merged == {"rows": 3, "ignored_rows": 1, "duplicate_rows": 2}
    with h5py.File(tmp_path / "scores.h5") as f:
        assert f["key"].asstr()[:].tolist() == ["a", "b", "c"]
        assert f["error"].asstr()[:].tolist() == ["", "", "from run1"]
        assert f["status"][:].tolist() == [0, 0, 1]


def test_uncommitted_rows_are_not_done(tmp_path: Path) -> None:
    w = PartWriter(tmp_path, "run1", 0)
    add(w, ["a"])
    w.commit()
    add(w, ["b"])  # buffered, not durable: a crash now loses it and the rerun redoes it
    (tmp_path / PARTS / ".run1-r00000-000001.h5.123.tmp").write_bytes(b"half a file")
    assert done_keys(tmp_path).tolist() == [b"a"]


def test_merge_streams_parts_of_several_runs_into_global_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of a run that stopped and the run that finished it (other shares, so not in rank order), with keys
    written to scores.h5 a few at a time: every key once, in key order, each with its own row."""
    monkeypatch.setattr("batchscore.writer.MERGE_CHUNK", 4)
    keys = [f"k{i:03d}" for i in range(30)]
    first = [PartWriter(tmp_path, "run1", r) for r in range(2)]
    for rank, share in ((0, keys[0:6]), (1, keys[15:21])):  # stopped after a few batches a rank
        add(first[rank], share, errors=[f"run1 {k}" for k in share])
        first[rank].commit()
    rest = [k for k in keys if k not in keys[0:6] + keys[15:21]]
    for rank in range(3):
        writer = PartWriter(tmp_path, "run2", rank)
        for part in np.array_split(np.array(rest[rank * 6:(rank + 1) * 6]), 2):
            add(writer, part.tolist(), errors=[f"run2 {k}" for k in part])
            writer.commit()
    assert merge(tmp_path, keys, {}) == {"rows": 30, "ignored_rows": 0, "duplicate_rows": 0}
    with h5py.File(tmp_path / "scores.h5") as f:
        assert f["key"].asstr()[:].tolist() == keys
        assert [e.split()[1] for e in f["error"].asstr()[:]] == keys  # each row is its own key's
