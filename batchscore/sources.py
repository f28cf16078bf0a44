"""Sources: turn the job's inputs into a sorted list of keyed items and read their bytes.

An `Item` is small and picklable (it names where the bytes are, not the bytes), so decode
workers read in parallel. Tar members are located once by offset and read with a seek, never
extracted; HDF5 sources hold encoded image bytes, one per row.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
HDF5_EXTENSIONS = frozenset({".h5", ".hdf5"})


class SourceError(ValueError):
    """An input that cannot be listed at all (missing, unknown type); fails the job at start."""


@dataclass(frozen=True)
class Item:
    """One image: its stable key and where its bytes live.

    kind: "file" (path), "tar" (path, offset, size), "h5" (path, dataset, index) or "bad"
    (listed but unreadable by construction, e.g. an unsafe tar member; `error` says why).
    """

    key: str
    kind: str
    path: str
    offset: int = 0
    size: int = 0
    dataset: str = ""
    error: str = ""


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _unsafe_member(name: str) -> bool:
    return name.startswith(("/", "\\")) or ".." in PurePosixPath(name.replace("\\", "/")).parts


def list_tar(path: Path, key_prefix: str) -> list[Item]:
    """Members of an uncompressed tar, by offset; unsafe names become "bad" items."""
    items = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if not member.isfile() or not _is_image(member.name):
                    continue
                key = f"{key_prefix}:{member.name}"
                if _unsafe_member(member.name):
                    items.append(Item(key, "bad", str(path), error="unsafe path in tar (absolute or '..')"))
                else:
                    items.append(Item(key, "tar", str(path), member.offset_data, member.size))
    except tarfile.ReadError as exc:
        raise SourceError(f"{path}: not a readable uncompressed tar ({exc}); compressed tars are not supported, "
                          "use plain .tar shards") from None
    return items


def list_hdf5(path: Path, dataset: str, key_prefix: str) -> list[Item]:
    """Rows of an HDF5 dataset of encoded images; keys from a sibling 'keys' dataset when present."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise SourceError(f"{path}: no dataset {dataset!r} (set hdf5_dataset in the job file); "
                                  f"found: {', '.join(f.keys()) or 'nothing'}")
            n = len(f[dataset])
            names = [k.decode() if isinstance(k, bytes) else str(k) for k in f["keys"][:]] if "keys" in f else None
    except OSError as exc:
        raise SourceError(f"{path}: cannot open as HDF5: {exc}") from None
    if names is not None and len(names) != n:
        raise SourceError(f"{path}: 'keys' has {len(names)} rows but {dataset!r} has {n}")
    return [Item(f"{key_prefix}:{names[i] if names else f'{i:09d}'}", "h5", str(path), offset=i, dataset=dataset)
            for i in range(n)]


def list_file_lines(path: Path) -> list[bytes]:
    """A list file's entries as bytes: lines stripped, blank lines and '#' comments left out."""
    return [line for line in (raw.strip() for raw in path.read_bytes().splitlines())
            if line and not line.startswith(b"#")]


def list_file_list(path: Path) -> Iterator[Item]:
    """A text file of image paths, one per line (relative to the list file's folder); '#' comments."""
    base = path.parent
    for line in b"\n".join(list_file_lines(path)).decode("utf-8").split("\n"):
        if line:
            yield Item(line, "file", os.path.join(base, line))


def list_dir(root: Path) -> list[Item]:
    """Images under a folder, recursively; plain tar shards found there are expanded in place."""
    items = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if _is_image(name):
                items.append(Item(rel, "file", str(full)))
            elif name.endswith(".tar"):
                items.extend(list_tar(full, rel))
    return items


def iter_items(inputs: tuple[Path, ...] | list[Path], hdf5_dataset: str = "images") -> Iterator[Item]:
    """All items of all inputs, input by input (not sorted): what `list_items` sorts, or a caller keeps compactly."""
    for path in inputs:
        if not path.exists():
            raise SourceError(f"input not found: {path}")
        suffix = path.suffix.lower()
        if path.is_dir():
            yield from list_dir(path)
        elif suffix == ".tar":
            yield from list_tar(path, path.name)
        elif suffix in HDF5_EXTENSIONS:
            yield from list_hdf5(path, hdf5_dataset, path.name)
        elif suffix in LIST_EXTENSIONS:
            yield from list_file_list(path)
        elif _is_image(path.name):
            yield Item(path.name, "file", str(path))
        else:
            raise SourceError(f"input {path}: unknown type; give a folder, a .tar, a .h5/.hdf5, "
                              f"a list file ({', '.join(sorted(LIST_EXTENSIONS))}) or an image")


def list_items(inputs: tuple[Path, ...] | list[Path], hdf5_dataset: str = "images") -> list[Item]:
    """All items of all inputs in global (sorted key) order; duplicate keys are an error."""
    items = sorted(iter_items(inputs, hdf5_dataset), key=lambda it: it.key)
    for a, b in zip(items, items[1:]):
        if a.key == b.key:
            raise SourceError(f"duplicate key {a.key!r} in the inputs; each image must appear once")
    return items


def shard(items: list, rank: int, size: int) -> list:
    """Rank `rank`'s contiguous share of `items`, balanced to within one item."""
    base, extra = divmod(len(items), size)
    start = rank * base + min(rank, extra)
    return items[start:start + base + (1 if rank < extra else 0)]


class Reader:
    """Reads item bytes, keeping tar and HDF5 handles open for the life of the reader (one per worker)."""

    def __init__(self) -> None:
        self._files: dict[str, object] = {}

    def read(self, item: Item) -> bytes:
        """The encoded bytes of one item; OSError (or ValueError for "bad" items) on failure."""
        if item.kind == "file":
            with open(item.path, "rb") as f:
                return f.read()
        if item.kind == "tar":
            f = self._open(item.path)
            f.seek(item.offset)
            data = f.read(item.size)
            if len(data) != item.size:
                raise OSError(f"tar member truncated ({len(data)} of {item.size} bytes)")
            return data
        if item.kind == "h5":
            dset = self._open(item.path)[item.dataset]
            return bytes(memoryview(dset[item.offset]))
        raise ValueError(item.error or f"unreadable item kind {item.kind!r}")

    def read_span(self, path: str, offset: int, size: int) -> bytes:
        """`size` bytes of a tar from `offset` in one sequential read (fewer at the end of a truncated file)."""
        f = self._open(path)
        f.seek(offset)
        return f.read(size)

    def _open(self, path: str):  # noqa: ANN202 - file or h5py.File
        handle = self._files.get(path)
        if handle is None:
            if path.endswith(".tar"):
                handle = open(path, "rb", buffering=1 << 20)
            else:
                import h5py
                handle = h5py.File(path, "r")
            self._files[path] = handle
        return handle

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
