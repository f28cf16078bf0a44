"""On-disk cache of built engines: TensorRT plans, compiled PyTorch packages and converted PyTorch modules.

Building is slow (minutes) and specific to the model, the GPU model and the software versions, so
it happens once per key and node: the first rank to take the entry's file lock builds into a
temporary file and renames it into place, then writes a small JSON sidecar holding the key. Ranks
that arrive meanwhile wait on the lock and then load what was built. An entry is trusted only when
its sidecar holds exactly the key asked for; an entry that fails to load (truncated, built by another
version) is rebuilt once under the lock, never crashed on and never read half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from filelock import FileLock

from .writer import publish, write_json

T = TypeVar("T")


class CacheError(RuntimeError):
    """A cache entry could not be built or loaded even after a rebuild."""


class StaleEntry(Exception):
    """Raised by a loader for an entry it cannot use (corrupt, or built by other software)."""


def default_cache_dir() -> Path:
    """$BATCHSCORE_CACHE, else $XDG_CACHE_HOME/batchscore, else ~/.cache/batchscore."""
    if os.environ.get("BATCHSCORE_CACHE"):
        return Path(os.environ["BATCHSCORE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "batchscore"


def key_digest(key: dict) -> str:
    """A short stable name for a key (the JSON of its fields, sorted)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class Loaded(Generic[T]):
    """What `EngineCache.get` returns: the loaded object and how it came to be."""

    value: T
    path: Path
    status: str  # "hit" (loaded without waiting), "waited" (another rank built it), "built", "rebuilt"
    seconds: float  # spent in get(): waiting, building and loading


class EngineCache:
    """A folder of built artifacts, `<kind>-<digest><suffix>` each with a `.json` sidecar."""

    def __init__(self, root: Path, lock_timeout: float = 3600.0) -> None:
        self.root = Path(root)
        self.lock_timeout = lock_timeout

    def path(self, key: dict, suffix: str = "") -> Path:
        kind = re.sub(r"[^A-Za-z0-9_.-]", "_", str(key.get("kind", "engine")))
        return self.root / f"{kind}-{key_digest(key)}{suffix}"

    def _valid(self, entry: Path, key: dict) -> bool:
        sidecar = entry.with_name(entry.name + ".json")
        try:
            return json.loads(sidecar.read_text())["key"] == key and entry.exists()
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def _try_load(self, entry: Path, key: dict, load: Callable[[Path], T]) -> tuple[bool, T | None]:
        if not self._valid(entry, key):
            return False, None
        try:
            return True, load(entry)
        except StaleEntry:
            return False, None

    def get(self, key: dict, build: Callable[[Path], None], load: Callable[[Path], T], suffix: str = "") -> Loaded[T]:
        """Load the entry for `key`, building it first if no valid entry exists (one builder per lock).

        `build(tmp)` writes the artifact to `tmp` (a file or a folder); `load(path)` returns the usable
        object or raises StaleEntry. Returns the loaded object with its path and how it was obtained.
        """
        start = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        entry = self.path(key, suffix)
        ok, value = self._try_load(entry, key, load)
        if ok:
            return Loaded(value, entry, "hit", time.perf_counter() - start)
        with FileLock(str(entry) + ".lock", timeout=self.lock_timeout):
            ok, value = self._try_load(entry, key, load)  # built by another rank while we waited
            if ok:
                return Loaded(value, entry, "waited", time.perf_counter() - start)
            status = "rebuilt" if entry.exists() else "built"
            self._build(entry, key, build)
            ok, value = self._try_load(entry, key, load)
            if not ok:
                raise CacheError(f"{entry}: freshly built entry does not load; see the build log above")
        return Loaded(value, entry, status, time.perf_counter() - start)

    def _build(self, entry: Path, key: dict, build: Callable[[Path], None]) -> None:
        """Build into a temporary name, rename into place, then publish the sidecar (last)."""
        sidecar = entry.with_name(entry.name + ".json")
        sidecar.unlink(missing_ok=True)  # from here on the old entry is invalid for everyone
        tmp = entry.with_name(f".{entry.stem}.{os.getpid()}.tmp{entry.suffix}")  # keeps the suffix loaders check
        started = time.perf_counter()
        try:
            build(tmp)
            if not tmp.exists():
                raise CacheError(f"{entry}: the builder wrote nothing")
            if tmp.is_dir():  # a folder artifact: a rename replaces only an absent name
                _remove(entry)
                os.replace(tmp, entry)
            else:
                publish(tmp, entry)
        finally:
            _remove(tmp)
        write_json(sidecar, {"key": key, "built_seconds": round(time.perf_counter() - started, 3),
                             "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid()})


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
