"""Writer: each rank commits its results as small HDF5 part files; rank 0 merges them into scores.h5.

A part is written to a temporary name and renamed, so a part that exists is complete: work counts
as done only once it is durable. A rerun skips keys already in committed parts (resume after a
kill), and the merge checks that every input appears exactly once before publishing scores.h5
atomically (write elsewhere in the folder, then rename).
"""

from __future__ import annotations

import json
import os
import threading
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .keys import STR, encode_strings
STATUS_OK, STATUS_ERROR = 0, 1
PARTS = ".parts"
MERGE_CHUNK = 1 << 20  # keys written to scores.h5 at a time


def atomic_path(path: Path) -> Path:
    """A temporary sibling of `path` that never looks like a finished result."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def publish(tmp: Path, final: Path) -> None:
    """fsync then rename: readers see the old file or the complete new one, never half."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def write_json(path: Path, data: dict) -> None:
    tmp = atomic_path(path)
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    publish(tmp, path)


@dataclass
class Rows:
    """Results of some images: one entry per key, in key order."""

    keys: list[str] = field(default_factory=list)
    topk_index: list[np.ndarray] = field(default_factory=list)
    topk_score: list[np.ndarray] = field(default_factory=list)
    status: list[np.ndarray] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    outputs: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    def extend(self, keys: list[str], topk_index: np.ndarray, topk_score: np.ndarray, errors: list[str],
               outputs: dict[str, np.ndarray]) -> None:
        self.keys.extend(keys)
        self.topk_index.append(topk_index.astype(np.int32))
        self.topk_score.append(topk_score.astype(np.float32))
        self.status.append(np.array([STATUS_ERROR if e else STATUS_OK for e in errors], np.int8))
        self.errors.extend(errors)
        for name, arr in outputs.items():
            self.outputs.setdefault(name, []).append(arr)


def _write_rows(f: h5py.File, rows: Rows) -> None:
    f.create_dataset("key", data=encode_strings(rows.keys), dtype=STR)
    f.create_dataset("topk_index", data=np.concatenate(rows.topk_index))
    f.create_dataset("topk_score", data=np.concatenate(rows.topk_score))
    f.create_dataset("status", data=np.concatenate(rows.status))
    f.create_dataset("error", data=encode_strings(rows.errors), dtype=STR)
    for name, arrays in rows.outputs.items():
        f.create_dataset(f"outputs/{name}", data=np.concatenate(arrays))


class PartWriter:
    """One rank's committed results: buffered rows flushed to `DIR/.parts/<run>-r<rank>-<seq>.h5`.

    Thread-safe: a stop signal commits the finished rows from another thread at once (signals.py).
    """

    def __init__(self, out_dir: Path, run_id: str, rank: int) -> None:
        self.dir = out_dir / PARTS
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = f"{run_id}-r{rank:05d}"
        self.seq = 0
        self.rows = Rows()
        self.seconds = 0.0
        self.committed = 0
        self.lock = threading.Lock()

    def add(self, keys: list[str], topk_index: np.ndarray, topk_score: np.ndarray, errors: list[str],
            outputs: dict[str, np.ndarray]) -> None:
        with self.lock:
            self.rows.extend(keys, topk_index, topk_score, errors, outputs)

    def commit(self) -> None:
        """Make the buffered rows durable as one part file (no-op when empty)."""
        with self.lock:
            if not self.rows:
                return
            start = time.perf_counter()
            final = self.dir / f"{self.prefix}-{self.seq:06d}.h5"
            tmp = atomic_path(final)
            with h5py.File(tmp, "w") as f:
                _write_rows(f, self.rows)
            publish(tmp, final)
            self.committed += len(self.rows)
            self.seq += 1
            self.rows = Rows()
            self.seconds += time.perf_counter() - start


def part_files(out_dir: Path) -> list[Path]:
    """Committed parts in name order (run, rank, sequence); temporary files of a crashed writer are not parts."""
    return sorted((out_dir / PARTS).glob("*.h5"))


def key_array(keys: Iterable[str] | np.ndarray) -> np.ndarray:
    """Keys as one fixed-width byte array (UTF-8): compact, and it sorts as the strings do."""
    if isinstance(keys, np.ndarray) and keys.dtype.kind == "S":
        return keys
    return np.array([k.encode("utf-8", "surrogateescape") if isinstance(k, str) else k for k in keys], dtype="S")


def _part_keys(f: h5py.File) -> np.ndarray:
    return f["key"][()].astype("S")  # h5py reads UTF-8 strings as bytes objects: these are the stored bytes


def done_keys(out_dir: Path) -> np.ndarray:
    """Keys already committed by an earlier (interrupted) run into this output folder, sorted, each once."""
    found = []
    for part in part_files(out_dir):
        with h5py.File(part, "r") as f:
            found.append(_part_keys(f))
    return np.unique(np.concatenate(found)) if found else np.array([], dtype="S1")


def remove_leftovers(folder: Path) -> list[Path]:
    """Temporary files and retired part folders a killed job left in `folder` (and its parts folder).

    Called by the job holding the folder's lock, so no live writer owns them."""
    found = [p for where in (folder, folder / PARTS) for pattern in (".*.tmp", ".write-test-*", ".h5lock-test-*")
             for p in where.glob(pattern)] + list(folder.glob(f"{PARTS}.done-*"))
    for path in found:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def retire_parts(out_dir: Path) -> None:
    """After the result is published: move the parts folder away in one rename (the run's last commit point,
    so a folder with a parts folder is an unfinished run), then delete it."""
    retired = out_dir / f"{PARTS}.done-{os.getpid()}"
    os.replace(out_dir / PARTS, retired)
    shutil.rmtree(retired)


class MergeError(RuntimeError):
    """The parts do not cover the inputs; scores.h5 is not published."""


def merge(out_dir: Path, expected_keys: Iterable[str] | np.ndarray, attrs: dict,
          final_name: str = "scores.h5") -> dict[str, int]:
    """Copy every part's rows into one file in global key order, part by part, and publish it atomically.

    Memory is one part plus a flag per key. Each key of `expected_keys` (sorted) must be covered; rows of
    keys not among them (an image removed since they were scored) are ignored, and a key found twice keeps
    the row of the first part in name order; both are counted in the returned figures."""
    expected = key_array(expected_keys)
    n = len(expected)
    seen = np.zeros(n, bool)
    ignored = duplicates = 0
    final = out_dir / final_name
    tmp = atomic_path(final)
    try:
        with h5py.File(tmp, "w") as out:
            keys_out = out.create_dataset("key", shape=(n,), dtype=STR)
            for start in range(0, n, MERGE_CHUNK):
                keys_out[start:start + MERGE_CHUNK] = expected[start:start + MERGE_CHUNK].astype(object)
            for part in part_files(out_dir):
                with h5py.File(part, "r") as f:
                    keys = _part_keys(f)
                    pos = np.searchsorted(expected, keys)
                    known = pos < n
                    known[known] = expected[pos[known]] == keys[known]
                    ignored += int((~known).sum())
                    rows = np.flatnonzero(known)
                    rows = rows[np.unique(pos[rows], return_index=True)[1]]  # first of a key repeated in the part
                    rows = rows[~seen[pos[rows]]]
                    duplicates += int(known.sum()) - len(rows)
                    at = pos[rows]
                    seen[at] = True
                    for name, dset in _datasets(f):
                        if name == "key":
                            continue
                        if name not in out:
                            out.create_dataset(name, shape=(n, *dset.shape[1:]), dtype=dset.dtype)
                        data = dset[()]
                        _scatter(out[name], at, data if len(rows) == len(data) else data[rows])
            missing = n - int(seen.sum())
            if missing:
                raise MergeError(f"parts in {out_dir / PARTS} lack {missing} of {n} inputs; "
                                 "rerun the same job to finish it")
            for key, value in attrs.items():
                out.attrs[key] = value
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    publish(tmp, final)
    return {"rows": n, "ignored_rows": ignored, "duplicate_rows": duplicates}


def _datasets(group: h5py.Group, prefix: str = "") -> Iterable[tuple[str, h5py.Dataset]]:
    for name, obj in group.items():
        if isinstance(obj, h5py.Group):
            yield from _datasets(obj, f"{prefix}{name}/")
        else:
            yield f"{prefix}{name}", obj


def _scatter(dset: h5py.Dataset, positions: np.ndarray, data: np.ndarray) -> None:
    """Write rows to increasing positions, one slice per contiguous run of them."""
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(positions)]):
        if hi > lo:
            dset[positions[lo]:positions[hi - 1] + 1] = data[lo:hi]
