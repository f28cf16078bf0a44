"""The plan as columns: the same items as `list_items`, split into the shares `shard` gives, resumable."""

from __future__ import annotations

import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from batchscore.itemtable import ItemTable
from batchscore.sources import SourceError, list_items, shard
from batchscore.writer import key_array


@pytest.fixture
def inputs(tmp_path: Path, sample_dir: Path) -> list[Path]:
    """A folder, a tar shard with an unsafe member, an HDF5 file and an unsorted list file with a comment,
    a blank line and an absolute path."""
    images = sorted(p for p in sample_dir.rglob("*") if p.suffix in (".jpg", ".png"))
    with tarfile.open(tmp_path / "shard.tar", "w") as tar:
        for p in images[:5]:
            tar.add(p, arcname=f"inner/{p.name}")
        tar.add(images[5], arcname="../escape.jpg")
    with h5py.File(tmp_path / "images.h5", "w") as f:
        dset = f.create_dataset("images", (3,), dtype=h5py.vlen_dtype(np.uint8))
        for i, p in enumerate(images[:3]):
            dset[i] = np.frombuffer(p.read_bytes(), np.uint8)
    listing = tmp_path / "more.txt"
    listing.write_text("# more images\nzz/last.jpg\n\n  aa/first.jpg  \n" + f"{images[6]}\n")
    return [sample_dir, tmp_path / "shard.tar", tmp_path / "images.h5", listing]


def test_columns_hold_the_items_list_items_gives(inputs: list[Path]) -> None:
    table = ItemTable.from_inputs(inputs)
    items = list_items(inputs)
    assert len(table) == len(items) and list(table) == items
    assert table[len(items) - 1] == items[-1] and table[3:9] == items[3:9]
    assert any(it.kind == "bad" and it.error for it in table)  # the unsafe member keeps its reason
    assert table.keys.dtype.kind == "S" and len(table.sources) < len(items) / 4  # columns, few distinct sources


def test_shares_are_the_contiguous_shards_and_resume_leaves_out_what_is_done(inputs: list[Path]) -> None:
    table, items = ItemTable.from_inputs(inputs), list_items(inputs)
    for ranks in (1, 2, 4, 7):
        assert [list(share) for share in table.split(ranks)] == [shard(items, r, ranks) for r in range(ranks)]
    done = key_array(sorted(it.key for it in items[::3]))
    todo = table.without(done)
    assert list(todo) == [it for i, it in enumerate(items) if i % 3]
    assert [list(s) for s in todo.split(2)] == [shard(list(todo), r, 2) for r in range(2)]


def test_a_duplicate_key_across_inputs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x/1.jpg\nx/2.jpg\n")
    (tmp_path / "b.txt").write_text("x/2.jpg\n")
    with pytest.raises(SourceError, match="duplicate key 'x/2.jpg'"):
        ItemTable.from_inputs([tmp_path / "a.txt", tmp_path / "b.txt"])
