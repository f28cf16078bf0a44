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
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .keys import STR, decode_strings, encode_strings
STATUS_OK, STATUS_ERROR = 0, 1
PARTS = ".parts"


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
    """Committed parts (temporary files of a crashed writer are not parts)."""
    return sorted((out_dir / PARTS).glob("*.h5"))


def done_keys(out_dir: Path) -> set[str]:
    """Keys already committed by an earlier (interrupted) run into this output folder."""
    keys: set[str] = set()
    for part in part_files(out_dir):
        with h5py.File(part, "r") as f:
            keys.update(decode_strings(f["key"]).tolist())
    return keys


class MergeError(RuntimeError):
    """The parts do not cover the inputs exactly once; scores.h5 is not published."""


def merge(out_dir: Path, expected_keys: list[str], attrs: dict, final_name: str = "scores.h5") -> Path:
    """Merge all parts into one file in global key order, check exactly-once, publish atomically."""
    parts = part_files(out_dir)
    part_keys = []
    for part in parts:
        with h5py.File(part, "r") as f:
            part_keys.append(decode_strings(f["key"]))
    all_keys = np.concatenate(part_keys) if part_keys else np.array([], dtype=object)
    order = np.argsort(all_keys, kind="stable")
    sorted_keys = all_keys[order]
    if len(sorted_keys) != len(expected_keys) or list(sorted_keys) != list(expected_keys):
        dupes = int(len(sorted_keys) - len(set(sorted_keys.tolist())))
        missing = len(set(expected_keys) - set(sorted_keys.tolist()))
        raise MergeError(f"parts in {out_dir / PARTS} hold {len(sorted_keys)} rows for {len(expected_keys)} "
                         f"inputs ({dupes} duplicated, {missing} missing); rerun the same job to finish it")
    final = out_dir / final_name
    tmp = atomic_path(final)
    with h5py.File(tmp, "w") as out:
        out.create_dataset("key", data=encode_strings(sorted_keys), dtype=STR)
        for part, keys in zip(parts, part_keys):
            positions = np.searchsorted(sorted_keys, keys)
            with h5py.File(part, "r") as f:
                for name, dset in _datasets(f):
                    if name == "key":
                        continue
                    if name not in out:
                        out.create_dataset(name, shape=(len(sorted_keys), *dset.shape[1:]), dtype=dset.dtype)
                    _scatter(out[name], positions, dset[()])
        for key, value in attrs.items():
            out.attrs[key] = value
    publish(tmp, final)
    return final


def _datasets(group: h5py.Group, prefix: str = "") -> Iterable[tuple[str, h5py.Dataset]]:
    for name, obj in group.items():
        if isinstance(obj, h5py.Group):
            yield from _datasets(obj, f"{prefix}{name}/")
        else:
            yield f"{prefix}{name}", obj


def _scatter(dset: h5py.Dataset, positions: np.ndarray, data: np.ndarray) -> None:
    """Write rows to (increasing) positions, as one slice when they are contiguous."""
    if len(positions) and positions[-1] - positions[0] == len(positions) - 1:
        dset[positions[0]:positions[-1] + 1] = data
    else:
        for pos, row in zip(positions, data):
            dset[pos] = row
