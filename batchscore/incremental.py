"""Incremental scoring (`--incremental`): a nightly run scores only what is new or changed.

Layout under the job's `output` folder:

    index.h5                  cumulative manifest, one row per key ever seen: size, mtime_ns, sha256
                              ("" when not hashed), run (the run whose scores.h5 holds its latest scores)
                              and removed (the run that found it gone; "" while present)
    runs/<run>/changes.h5     the run's plan, written before any scoring: the keys it scores (change =
                              new or changed), keys whose stat changed but whose content did not
                              (touched, only with manifest_hash), and the keys it marks removed
    runs/<run>/scores.h5      scores of that run's new and changed images, plus summary.json

A run id is its UTC start time (20261123T020000Z), so runs/ reads as a dated history. An image is
"changed" when its size or mtime differ from the index (for tar members the header's mtime, for
rows of an HDF5 input the container's stat); with `manifest_hash = true` a changed stat is rescored
only when the content's SHA-256 differs too. A different model, precision, top_k, save_outputs or
preprocessing rescores everything. Removed images stay in the index, marked with the run that
noticed, so their old scores are still findable but never mistaken for current ones.

Crash safety: the index is replaced atomically (write, fsync, rename) only after the run's
scores.h5 is published. A run stopped before that (signal, kill, walltime) is resumed by the next
`--incremental` run with its stored plan (its committed parts are kept); a run whose scores.h5 was
published but whose index update was lost is applied to the index first.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tarfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from .comm import log
from .config import ConfigError, Job
from .h5lock import is_lock_error, lock_advice
from .itemtable import CHUNK, ItemTable, decode_key
from .keys import decode_strings, encode_strings
from .sources import Item, Reader, tar_members
from .writer import MERGE_CHUNK, PARTS, STR, atomic_path, key_array, publish

INDEX = "index.h5"
RUNS = "runs"
CHANGES = "changes.h5"
SCORED = ("new", "changed")


@dataclass
class Changes:
    """One incremental run's plan: which keys it scores or touches (with their new stat) and removes."""

    run_id: str
    run_dir: Path
    index: Path
    fingerprint: dict
    keys: list[str] = field(default_factory=list)
    change: list[str] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    mtime_ns: list[int] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def scored_keys(self) -> set[str]:
        return {k for k, c in zip(self.keys, self.change) if c in SCORED}

    def counts(self) -> dict[str, int]:
        counts = Counter(self.change)
        return {"new": counts["new"], "changed": counts["changed"], "touched": counts["touched"],
                "removed": len(self.removed)}


def _read(path: Path) -> h5py.File:
    """Open an HDF5 file for reading; a locking failure names the fix."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if is_lock_error(exc):
            raise ConfigError(lock_advice(path.parent)) from None
        raise


def _strings(f: h5py.File, name: str) -> list[str]:
    return decode_strings(f[name]).tolist() if name in f else []


def _column(f: h5py.File, name: str, n: int) -> np.ndarray:
    """A string column as bytes (fixed width): compact for millions of keys."""
    return f[name][()].astype("S") if name in f else np.zeros(n, "S1")


def _put(column: np.ndarray, rows: np.ndarray, value: bytes | np.ndarray) -> np.ndarray:
    """`column` with `value` at `rows`, widened first when the value is longer than its width."""
    width = max(column.dtype.itemsize, np.asarray(value, dtype="S").dtype.itemsize)
    column = column.astype(f"S{width}", copy=False)
    column[rows] = value
    return column


@dataclass
class Index:
    """The cumulative manifest, in memory as columns sorted by key (bytes, as writer.key_array)."""

    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, "S1"))
    size: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mtime_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sha256: np.ndarray = field(default_factory=lambda: np.zeros(0, "S1"))
    run: np.ndarray = field(default_factory=lambda: np.zeros(0, "S1"))
    removed: np.ndarray = field(default_factory=lambda: np.zeros(0, "S1"))
    fingerprint: dict | None = None
    runs: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "Index":
        if not path.exists():
            return cls()
        with _read(path) as f:
            keys = _column(f, "key", 0)
            index = cls(keys, f["size"][()], f["mtime_ns"][()], *(_column(f, name, len(keys))
                                                                   for name in ("sha256", "run", "removed")),
                        json.loads(f.attrs["fingerprint"]), [str(r) for r in f.attrs["runs"]])
        order = np.argsort(index.keys, kind="stable")  # written sorted; an index of an older version too
        if (order != np.arange(len(order))).any():
            for name in ("keys", "size", "mtime_ns", "sha256", "run", "removed"):
                setattr(index, name, getattr(index, name)[order])
        return index

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key in the index, -1 where it has none."""
        if not len(self.keys):
            return np.full(len(keys), -1)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[pos] == keys, pos, -1)

    def apply(self, changes: Changes, scored: set[str]) -> None:
        """Record a finished run: new stat (and run, for keys it scored) per key; removals marked."""
        keep = [i for i, (key, change) in enumerate(zip(changes.keys, changes.change))
                if change not in SCORED or key in scored]  # gone before it was scored: keeps its previous state
        keys = key_array([changes.keys[i] for i in keep])
        rows = self.find(keys)
        new = np.unique(keys[rows < 0])
        if len(new):
            n = len(new)
            self.keys = np.concatenate([self.keys, new])
            self.size, self.mtime_ns = (np.concatenate([c, np.zeros(n, np.int64)]) for c in (self.size, self.mtime_ns))
            self.sha256, self.run, self.removed = (np.concatenate([c, np.zeros(n, c.dtype)])
                                                   for c in (self.sha256, self.run, self.removed))
            order = np.argsort(self.keys, kind="stable")
            for name in ("keys", "size", "mtime_ns", "sha256", "run", "removed"):
                setattr(self, name, getattr(self, name)[order])
            rows = self.find(keys)
        self.size[rows] = np.array([changes.size[i] for i in keep], np.int64)
        self.mtime_ns[rows] = np.array([changes.mtime_ns[i] for i in keep], np.int64)
        self.sha256 = _put(self.sha256, rows, key_array([changes.sha256[i] for i in keep]))
        self.removed = _put(self.removed, rows, b"")
        rescored = rows[[changes.change[i] in SCORED for i in keep]] if len(keep) else rows
        self.run = _put(self.run, rescored, changes.run_id.encode())
        gone = self.find(key_array(changes.removed))
        self.removed = _put(self.removed, gone[gone >= 0], changes.run_id.encode())
        self.fingerprint = changes.fingerprint
        self.runs.append(changes.run_id)

    def present(self) -> int:
        return int((self.removed == b"").sum())

    def save(self, path: Path) -> None:
        """Write (sorted by key), then replace the old index atomically."""
        tmp = atomic_path(path)
        with h5py.File(tmp, "w") as f:
            for name, column in (("key", self.keys), ("sha256", self.sha256), ("run", self.run),
                                 ("removed", self.removed)):
                dset = f.create_dataset(name, shape=(len(column),), dtype=STR)
                for start in range(0, len(column), MERGE_CHUNK):
                    dset[start:start + MERGE_CHUNK] = column[start:start + MERGE_CHUNK].astype(object)
            f.create_dataset("size", data=self.size.astype(np.int64))
            f.create_dataset("mtime_ns", data=self.mtime_ns.astype(np.int64))
            f.attrs["fingerprint"] = json.dumps(self.fingerprint)
            f.attrs.create("runs", np.array(self.runs, dtype=object), dtype=STR)
            f.attrs["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.attrs["columns"] = ("run: the run under runs/ whose scores.h5 holds the key's latest scores; "
                                  "removed: the run that found the key gone ('' while present)")
        publish(tmp, path)


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return -1, 0  # vanished since it was listed: scored, it becomes an error row
    return st.st_size, st.st_mtime_ns


def stat_items(items: Iterable[Item]) -> tuple[np.ndarray, np.ndarray]:
    """Size and mtime_ns per item (as arrays): what decides 'changed' without reading image bytes."""
    container = functools.cache(_stat)  # the rows of an HDF5 input share its stat

    @functools.cache
    def tar_mtimes(path: str) -> dict[int, int]:
        with tarfile.open(path, mode="r:") as tar:
            return {m.offset_data: int(m.mtime * 1e9) for m in tar_members(tar)}  # a cut tar: its listed members

    chunks: list[np.ndarray] = []
    pairs: list[tuple[int, int]] = []
    for it in items:
        pairs.append((it.size, tar_mtimes(it.path).get(it.offset, 0)) if it.kind == "tar" else
                     _stat(it.path) if it.kind == "file" else container(it.path) if it.kind == "h5" else (0, 0))
        if len(pairs) == CHUNK:  # the per-item tuples of one chunk at a time
            chunks.append(np.array(pairs, np.int64))
            pairs.clear()
    chunks.append(np.array(pairs, np.int64).reshape(-1, 2))
    stats = np.concatenate(chunks)
    return stats[:, 0], stats[:, 1]


def content_hash(reader: Reader, item: Item) -> str:
    """SHA-256 of an item's encoded bytes; "" when it cannot be read (it is scored as an error row)."""
    try:
        return hashlib.sha256(reader.read(item)).hexdigest()
    except (OSError, ValueError):
        return ""


def new_run_id(runs: Path) -> str:
    """The UTC start time, made unique within runs/."""
    base = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_id, n = base, 1
    while (runs / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def diff(items: ItemTable, index: Index, changes: Changes, hash_content: bool) -> None:
    """Compare the listing with the index; fills `changes` with new, changed, touched and removed keys."""
    rescore_all = index.fingerprint is not None and index.fingerprint != changes.fingerprint
    size, mtime = stat_items(items)
    rows = index.find(items.keys)
    new = rows < 0
    changed = np.zeros(len(rows), bool)
    if len(index.keys):
        safe = np.maximum(rows, 0)
        new |= index.removed[safe] != b""
        changed = ~new & (rescore_all | (size != index.size[safe]) | (mtime != index.mtime_ns[safe]))
    reader = Reader()
    try:
        for r in np.flatnonzero(new | changed):
            item = items[int(r)]
            change = "new" if new[r] else "changed"
            sha = content_hash(reader, item) if hash_content else ""
            if change == "changed" and not rescore_all and sha and sha.encode() == index.sha256[rows[r]]:
                change = "touched"  # same bytes, new stat: update the index, keep the old scores
            for column, value in ((changes.keys, item.key), (changes.change, change), (changes.size, int(size[r])),
                                  (changes.mtime_ns, int(mtime[r])), (changes.sha256, sha)):
                column.append(value)
    finally:
        reader.close()
    listed = np.zeros(len(index.keys), bool)
    listed[rows[rows >= 0]] = True
    changes.removed = [decode_key(k) for k in index.keys[(index.removed == b"") & ~listed]]


def save_changes(changes: Changes) -> None:
    path = changes.run_dir / CHANGES
    tmp = atomic_path(path)
    with h5py.File(tmp, "w") as f:
        for name, values in (("key", changes.keys), ("change", changes.change), ("sha256", changes.sha256),
                             ("removed", changes.removed)):
            f.create_dataset(name, data=encode_strings(values), dtype=STR)
        f.create_dataset("size", data=np.array(changes.size, dtype=np.int64))
        f.create_dataset("mtime_ns", data=np.array(changes.mtime_ns, dtype=np.int64))
        f.attrs["run_id"] = changes.run_id
        f.attrs["fingerprint"] = json.dumps(changes.fingerprint)
        f.attrs["counts"] = json.dumps(changes.counts())
        f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    publish(tmp, path)


def load_changes(run_dir: Path, index: Path) -> Changes:
    with _read(run_dir / CHANGES) as f:
        return Changes(str(f.attrs["run_id"]), run_dir, index, json.loads(f.attrs["fingerprint"]),
                       _strings(f, "key"), _strings(f, "change"), f["size"][:].tolist(),
                       f["mtime_ns"][:].tolist(), _strings(f, "sha256"), _strings(f, "removed"))


def publish_run(changes: Changes, scored_keys: list[str]) -> dict[str, int]:
    """After the run's scores.h5 is published: fold the run into the index (atomically)."""
    index = Index.load(changes.index)
    index.apply(changes, set(scored_keys))
    index.save(changes.index)
    return {**changes.counts(), "scored": len(scored_keys), "index_keys": len(index.keys),
            "index_present": index.present()}


def _scores_keys(run_dir: Path) -> list[str]:
    with _read(run_dir / "scores.h5") as f:
        return _strings(f, "key")


def _of(items: ItemTable, keys: set[str]) -> ItemTable:
    """The rows of `items` whose key is in `keys`."""
    wanted = np.unique(key_array(list(keys)))
    return items.take(np.flatnonzero(np.isin(items.keys, wanted)))


def plan_changes(job: Job, items: ItemTable, fingerprint: dict) -> tuple[Changes, ItemTable]:
    """Rank 0, at planning: the run to do now (a pending one, else a new one) and the items it scores.

    `fingerprint` is the job's resume fingerprint; its input paths are left out here, so adding an
    input folder scores just that folder's images.
    """
    fingerprint = {k: v for k, v in fingerprint.items() if k != "input"}
    root, runs = job.output, job.output / RUNS
    index_path = root / INDEX
    try:
        runs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output directory {root} is not writable ({exc.strerror}); "
                          "choose another --output") from None
    applied = set(Index.load(index_path).runs)
    for run_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
        if run_dir.name in applied:
            shutil.rmtree(run_dir / PARTS, ignore_errors=True)  # killed after indexing: its parts are spent
        elif not (run_dir / CHANGES).exists():
            shutil.rmtree(run_dir)  # stopped before its plan was written: nothing in it
        elif (run_dir / "scores.h5").exists() and not (run_dir / PARTS).exists():
            log(0, f"incremental: run {run_dir.name} was scored but not indexed; indexing it now")
            publish_run(load_changes(run_dir, index_path), _scores_keys(run_dir))
        elif job.overwrite:
            log(0, f"incremental: discarding the unfinished run {run_dir.name} (--overwrite)")
            shutil.rmtree(run_dir)
        else:
            changes = load_changes(run_dir, index_path)
            if changes.fingerprint != fingerprint:
                raise ConfigError(f"{run_dir} is an unfinished run of a different job (model, precision or "
                                  "settings differ); pass --overwrite to discard it")
            todo = changes.scored_keys()
            log(0, f"incremental: continuing the unfinished run {run_dir.name} ({changes.counts()})")
            return changes, _of(items, todo)

    index = Index.load(index_path)
    if index.fingerprint is not None and index.fingerprint != fingerprint:
        log(0, "incremental: model or settings differ from the index's: every image is rescored")
    run_id = new_run_id(runs)
    changes = Changes(run_id, runs / run_id, index_path, fingerprint)
    diff(items, index, changes, job.manifest_hash)
    changes.run_dir.mkdir()
    save_changes(changes)
    todo = changes.scored_keys()
    log(0, f"incremental: run {changes.run_id}: {changes.counts()}, "
           f"{len(items) - len(changes.keys)} unchanged of {len(items)}")
    return changes, _of(items, todo)
