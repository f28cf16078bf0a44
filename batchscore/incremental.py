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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from .comm import log
from .config import ConfigError, Job
from .h5lock import is_lock_error, lock_advice
from .sources import Item, Reader
from .writer import PARTS, STR, atomic_path, publish

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
    return f[name].asstr()[:].tolist() if name in f else []


@dataclass
class Index:
    """The cumulative manifest, in memory: key → row number, columns as lists."""

    keys: list[str] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    mtime_ns: list[int] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    run: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    fingerprint: dict | None = None
    runs: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "Index":
        if not path.exists():
            return cls()
        with _read(path) as f:
            return cls(_strings(f, "key"), f["size"][:].tolist(), f["mtime_ns"][:].tolist(),
                       _strings(f, "sha256"), _strings(f, "run"), _strings(f, "removed"),
                       json.loads(f.attrs["fingerprint"]), [str(r) for r in f.attrs["runs"]])

    def rows(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    def apply(self, changes: Changes, scored: set[str]) -> None:
        """Record a finished run: new stat (and run, for keys it scored) per key; removals marked."""
        rows = self.rows()
        for key, change, size, mtime, sha in zip(changes.keys, changes.change, changes.size, changes.mtime_ns,
                                                 changes.sha256):
            if change in SCORED and key not in scored:
                continue  # gone before it was scored: the index keeps its previous state
            i = rows.get(key)
            if i is None:
                i = rows[key] = len(self.keys)
                for column, empty in ((self.keys, key), (self.size, 0), (self.mtime_ns, 0), (self.sha256, ""),
                                      (self.run, ""), (self.removed, "")):
                    column.append(empty)
            self.size[i], self.mtime_ns[i], self.sha256[i], self.removed[i] = size, mtime, sha, ""
            if change in SCORED:
                self.run[i] = changes.run_id
        for key in changes.removed:
            self.removed[rows[key]] = changes.run_id
        self.fingerprint = changes.fingerprint
        self.runs.append(changes.run_id)

    def save(self, path: Path) -> None:
        """Write sorted by key, then replace the old index atomically."""
        order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
        tmp = atomic_path(path)
        with h5py.File(tmp, "w") as f:
            for name, column, dtype in (("key", self.keys, STR), ("size", self.size, np.int64),
                                        ("mtime_ns", self.mtime_ns, np.int64), ("sha256", self.sha256, STR),
                                        ("run", self.run, STR), ("removed", self.removed, STR)):
                values = [column[i] for i in order]
                f.create_dataset(name, data=np.array(values, dtype=object if dtype is STR else dtype), dtype=dtype)
            f.attrs["fingerprint"] = json.dumps(self.fingerprint)
            f.attrs.create("runs", np.array(self.runs, dtype=object), dtype=STR)
            f.attrs["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.attrs["columns"] = ("run: the run under runs/ whose scores.h5 holds the key's latest scores; "
                                  "removed: the run that found the key gone ('' while present)")
        publish(tmp, path)


def stat_items(items: list[Item]) -> list[tuple[int, int]]:
    """(size, mtime_ns) per item: what decides 'changed' without reading image bytes."""
    @functools.cache
    def stat(path: str) -> tuple[int, int]:
        try:
            st = os.stat(path)
        except OSError:
            return -1, 0  # vanished since it was listed: scored, it becomes an error row
        return st.st_size, st.st_mtime_ns

    @functools.cache
    def tar_mtimes(path: str) -> dict[int, int]:
        with tarfile.open(path, mode="r:") as tar:
            return {m.offset_data: int(m.mtime * 1e9) for m in tar}

    return [(it.size, tar_mtimes(it.path).get(it.offset, 0)) if it.kind == "tar"
            else stat(it.path) if it.kind in ("file", "h5") else (0, 0) for it in items]


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


def diff(items: list[Item], index: Index, changes: Changes, hash_content: bool) -> None:
    """Compare the listing with the index; fills `changes` with new, changed, touched and removed keys."""
    rows = index.rows()
    rescore_all = index.fingerprint is not None and index.fingerprint != changes.fingerprint
    reader = Reader()
    try:
        for item, (size, mtime) in zip(items, stat_items(items)):
            i = rows.get(item.key)
            if i is None or index.removed[i]:
                change = "new"
            elif rescore_all or (size, mtime) != (index.size[i], index.mtime_ns[i]):
                change = "changed"
            else:
                continue
            sha = content_hash(reader, item) if hash_content else ""
            if change == "changed" and not rescore_all and sha and sha == index.sha256[i]:
                change = "touched"  # same bytes, new stat: update the index, keep the old scores
            for column, value in ((changes.keys, item.key), (changes.change, change), (changes.size, size),
                                  (changes.mtime_ns, mtime), (changes.sha256, sha)):
                column.append(value)
    finally:
        reader.close()
    listed = {it.key for it in items}
    changes.removed = [k for k, gone in zip(index.keys, index.removed) if not gone and k not in listed]


def save_changes(changes: Changes) -> None:
    path = changes.run_dir / CHANGES
    tmp = atomic_path(path)
    with h5py.File(tmp, "w") as f:
        for name, values in (("key", changes.keys), ("change", changes.change), ("sha256", changes.sha256),
                             ("removed", changes.removed)):
            f.create_dataset(name, data=np.array(values, dtype=object), dtype=STR)
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
            "index_present": sum(1 for r in index.removed if not r)}


def _scores_keys(run_dir: Path) -> list[str]:
    with _read(run_dir / "scores.h5") as f:
        return _strings(f, "key")


def plan_changes(job: Job, items: list[Item], fingerprint: dict) -> tuple[Changes, list[Item]]:
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
            return changes, [it for it in items if it.key in todo]

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
    return changes, [it for it in items if it.key in todo]
