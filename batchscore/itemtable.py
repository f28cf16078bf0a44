"""Items as columns: the plan of tens of millions of images in arrays instead of Python objects.

Rank 0 lists the inputs into one `ItemTable` (keys sorted, as a fixed-width byte array), takes away what
earlier runs committed, and sends each rank only its contiguous share (`split`); a rank turns rows into
`Item`s a batch at a time, as the decode pipeline slices them. A row's path is stored once per distinct
prefix: for files it is the folder the key is relative to, for tar and HDF5 members the container.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from .sources import LIST_EXTENSIONS, Item, SourceError, iter_items, list_file_lines

KINDS = ("file", "tar", "h5", "bad")
CHUNK = 1 << 18  # items turned into columns at a time while listing


def encode_key(key: str) -> bytes:
    """A key's bytes as stored in key arrays (UTF-8; surrogate-escaped bytes come back as they were)."""
    return key.encode("utf-8", "surrogateescape")


def decode_key(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class ItemTable(Sequence[Item]):
    """Rows of items in key order: keys (bytes), kind, source (index into `sources`), offset, size."""

    def __init__(self, keys: np.ndarray, kind: np.ndarray, source: np.ndarray, offset: np.ndarray,
                 size: np.ndarray, sources: list[tuple[str, str, str]], errors: dict[int, str]) -> None:
        self.keys, self.kind, self.source, self.offset, self.size = keys, kind, source, offset, size
        self.sources = sources  # (path prefix or container path, "" or "key" to append the key, dataset)
        self.errors = errors  # row -> reason, for "bad" items only

    @classmethod
    def from_inputs(cls, inputs: Iterable[Path], hdf5_dataset: str = "images",
                    skipped: Counter | None = None) -> "ItemTable":
        """The job's inputs as one table in key order (as `sources.list_items`, `skipped` as there); list files go
        straight into columns, without an `Item` a line."""
        columns = _Columns()
        for path in inputs:
            if path.suffix.lower() in LIST_EXTENSIONS and path.is_file():
                columns.add_list_file(path)
            else:
                columns.add_items(iter_items([path], hdf5_dataset, skipped))
        return columns.table()

    def take(self, rows: np.ndarray | slice) -> "ItemTable":
        """The rows `rows` (a slice, or increasing row numbers) as a table of their own."""
        errors = {}
        if self.errors:  # few rows (unsafe tar members): renumbered by a sorted search
            numbers = np.arange(len(self.keys))[rows] if isinstance(rows, slice) else rows
            old = np.array(sorted(self.errors))
            at = np.minimum(np.searchsorted(numbers, old), max(len(numbers) - 1, 0))
            kept = (at < len(numbers)) & (numbers[at] == old) if len(numbers) else np.zeros(len(old), bool)
            errors = {int(a): self.errors[int(o)] for a, o in zip(at[kept], old[kept])}
        return ItemTable(self.keys[rows], self.kind[rows], self.source[rows], self.offset[rows], self.size[rows],
                         self.sources, errors)

    def without(self, done: np.ndarray) -> "ItemTable":
        """The rows whose key is not in `done` (sorted keys)."""
        if not len(done):
            return self
        pos = np.minimum(np.searchsorted(done, self.keys), len(done) - 1)
        return self.take(np.flatnonzero(done[pos] != self.keys))

    def split(self, parts: int) -> list["ItemTable"]:
        """Contiguous shares, balanced to within one row (as `sources.shard`)."""
        base, extra = divmod(len(self), parts)
        starts = [r * base + min(r, extra) for r in range(parts + 1)]
        return [self.take(slice(a, b)) for a, b in zip(starts, starts[1:])]

    def item(self, row: int) -> Item:
        key = decode_key(self.keys[row])
        prefix, append, dataset = self.sources[self.source[row]]
        return Item(key, KINDS[self.kind[row]], prefix + key if append else prefix, int(self.offset[row]),
                    int(self.size[row]), dataset, self.errors.get(row, ""))

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> Item: ...
    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...

    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        if isinstance(index, slice):
            return [self.item(r) for r in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.item(index)

    def __iter__(self) -> Iterator[Item]:
        for start in range(0, len(self), CHUNK):
            yield from self[start:start + CHUNK]


class _Columns:
    """Chunks of columns being listed, and the distinct sources they point to."""

    def __init__(self) -> None:
        self.lookup: dict[tuple[str, str, str], int] = {}
        self.chunks: list[tuple[np.ndarray, ...]] = []
        self.errors: dict[int, str] = {}
        self.rows = 0

    def _source(self, where: tuple[str, str, str]) -> int:
        return self.lookup.setdefault(where, len(self.lookup))

    def _append(self, keys: np.ndarray, kind: np.ndarray, source: np.ndarray, offset: np.ndarray | None = None,
                size: np.ndarray | None = None) -> None:
        zeros = np.zeros(len(keys), np.int64)
        self.chunks.append((keys, kind, source, zeros if offset is None else offset, zeros if size is None else size))
        self.rows += len(keys)

    def add_list_file(self, path: Path) -> None:
        """Entries of a list file: key = the line, path = the line joined to the list file's folder."""
        lines = list_file_lines(path)  # bytes as written: a line that is not UTF-8 keeps its bytes as its key
        keys = np.array(lines, dtype="S") if lines else np.array([], dtype="S1")
        del lines
        absolute = np.char.startswith(keys, b"/")
        source = np.where(absolute, self._source(("", "key", "")),
                          self._source((os.path.join(path.parent, ""), "key", ""))).astype(np.int32)
        self._append(keys, np.zeros(len(keys), np.uint8), source)

    def add_items(self, items: Iterable[Item]) -> None:
        batch: list[Item] = []
        for it in items:
            batch.append(it)
            if len(batch) == CHUNK:
                self._add_batch(batch)
                batch = []
        self._add_batch(batch)

    def _add_batch(self, batch: list[Item]) -> None:
        keys, src = [], []
        for i, it in enumerate(batch):
            if it.error:
                self.errors[self.rows + i] = it.error
            if it.kind == "file" and it.path.endswith(it.key):  # folder + key: one source for many rows
                where = (it.path[:len(it.path) - len(it.key)], "key", "")
            else:
                where = (it.path, "", it.dataset)
            keys.append(encode_key(it.key))
            src.append(self._source(where))
        self._append(np.array(keys, dtype="S") if keys else np.array([], dtype="S1"),
                     np.array([KINDS.index(it.kind) for it in batch], np.uint8), np.array(src, np.int32),
                     np.array([it.offset for it in batch], np.int64), np.array([it.size for it in batch], np.int64))

    def table(self) -> ItemTable:
        """All rows in key order (no sort when they already are, as list files often are)."""
        if not self.chunks:
            self._add_batch([])
        keys, kind, source, offset, size = (np.concatenate([c[i] for c in self.chunks]) for i in range(5))
        self.chunks.clear()
        if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():
            order = np.argsort(keys, kind="stable")
            keys, kind, source, offset, size = (a[order] for a in (keys, kind, source, offset, size))
            moved = np.empty_like(order)
            moved[order] = np.arange(len(order))
            self.errors = {int(moved[r]): e for r, e in self.errors.items()}
        same = np.flatnonzero(keys[1:] == keys[:-1])
        if len(same):
            raise SourceError(f"duplicate key {decode_key(keys[same[0]])!r} in the inputs; each image must appear once")
        return ItemTable(keys, kind, source, offset, size,
                         [where for where, _ in sorted(self.lookup.items(), key=lambda kv: kv[1])], self.errors)
