"""Sources and sharding on real folders, list files, tar archives and HDF5 files."""

import io
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from batchscore.sources import Reader, SourceError, list_items, shard


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"b/2.jpg": b"two", "a/1.PNG": b"one", "a/deep/3.jpeg": b"three", "c.webp": b"four"}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.jpg").write_bytes(b"hidden")
    return files


def test_directory_is_recursive_by_extension_and_sorted(tmp_path: Path) -> None:
    files = make_tree(tmp_path)
    items = list_items([tmp_path])
    assert [it.key for it in items] == sorted(files)
    reader = Reader()
    assert {it.key: reader.read(it) for it in items} == files


def test_list_file_paths_relative_to_the_list(tmp_path: Path) -> None:
    make_tree(tmp_path)
    listing = tmp_path / "images.txt"
    listing.write_text("# my images\nb/2.jpg\n\na/1.PNG\n")
    items = list_items([listing])
    assert [it.key for it in items] == ["a/1.PNG", "b/2.jpg"]
    assert Reader().read(items[1]) == b"two"


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_tar_members_read_in_place_and_unsafe_names_rejected(tmp_path: Path) -> None:
    path = tmp_path / "shard-000.tar"
    with tarfile.open(path, "w") as tar:
        add_member(tar, "x/1.jpg", b"one" * 1000)
        add_member(tar, "2.png", b"two")
        add_member(tar, "../evil.jpg", b"evil")
        add_member(tar, "/abs.jpg", b"abs")
        add_member(tar, "readme.md", b"skip me")
    items = list_items([path])
    by_key = {it.key: it for it in items}
    assert sorted(by_key) == ["shard-000.tar:../evil.jpg", "shard-000.tar:/abs.jpg",
                              "shard-000.tar:2.png", "shard-000.tar:x/1.jpg"]
    reader = Reader()
    assert reader.read(by_key["shard-000.tar:x/1.jpg"]) == b"one" * 1000
    assert reader.read(by_key["shard-000.tar:2.png"]) == b"two"
    for key in ("shard-000.tar:../evil.jpg", "shard-000.tar:/abs.jpg"):
        assert by_key[key].kind == "bad"
        with pytest.raises(OSError, match="unsafe path"):
            reader.read(by_key[key])
    reader.close()
    assert not (tmp_path / "evil.jpg").exists() and not list(tmp_path.glob("x"))  # nothing extracted


def test_tars_inside_a_folder_are_expanded(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    with tarfile.open(tmp_path / "shards" / "s1.tar", "w") as tar:
        add_member(tar, "a.jpg", b"A")
    assert [it.key for it in list_items([tmp_path])] == ["shards/s1.tar:a.jpg"]


def test_hdf5_dataset_of_encoded_bytes(tmp_path: Path) -> None:
    path = tmp_path / "images.h5"
    blobs = [b"first", b"second!", b"x" * 5000]
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("images", (3,), dtype=h5py.vlen_dtype(np.uint8))
        for i, blob in enumerate(blobs):
            dset[i] = np.frombuffer(blob, np.uint8)
        f.create_dataset("keys", data=["c", "a", "b"])
    items = list_items([path])
    assert [it.key for it in items] == ["images.h5:a", "images.h5:b", "images.h5:c"]
    reader = Reader()
    assert [reader.read(it) for it in items] == [b"second!", b"x" * 5000, b"first"]
    with pytest.raises(SourceError, match="no dataset 'pixels'"):
        list_items([path], hdf5_dataset="pixels")


def test_missing_unknown_and_duplicate_inputs(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="input not found"):
        list_items([tmp_path / "nope"])
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(SourceError, match="unknown type"):
        list_items([tmp_path / "model.onnx"])
    (tmp_path / "a.jpg").write_bytes(b"a")
    with pytest.raises(SourceError, match="duplicate key 'a.jpg'"):
        list_items([tmp_path / "a.jpg", tmp_path / "a.jpg"])


@pytest.mark.parametrize("n", [0, 1, 5, 7, 100])
@pytest.mark.parametrize("size", [1, 2, 3, 8])
def test_shards_cover_everything_once_balanced_within_one(n: int, size: int) -> None:
    items = list(range(n))
    shards = [shard(items, r, size) for r in range(size)]
    assert [x for s in shards for x in s] == items  # contiguous, in order, exactly once
    lengths = [len(s) for s in shards]
    assert max(lengths) - min(lengths) <= 1
