"""Loaders: cheap callables that build or load what an engine runs, handed to the engine (Polygraphy's shape).

Creating a loader does nothing; calling it does the work and returns the session, module, package or plan.
A `CachedLoader` goes through the engine cache: the first call on a node builds the entry (once, under its
lock), every later call, in this process or another, reads it. After a call, `status` and `seconds` say
how it went, for the rank's log and the `build` command's rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Generic, TypeVar

from ..enginecache import EngineCache, default_cache_dir

T = TypeVar("T")


class Loader(Generic[T]):
    """Base class: `__call__` returns the loaded object; nothing is cached unless a subclass says so."""

    status = "none"  # how the last call got its object: the engine cache's status, or "none" (nothing cached)
    seconds = 0.0  # spent in the last call

    def __call__(self) -> T:
        raise NotImplementedError


class CachedLoader(Loader[T]):
    """A loader whose artifact is an engine-cache entry: `key()` names it, `build(path)` writes it, `read(path)`
    loads it (raising enginecache.StaleEntry for one it cannot use, which is then rebuilt once)."""

    suffix = ""

    def __init__(self, cache_dir: Path | None) -> None:
        self.cache_dir = cache_dir
        self.path: Path | None = None  # the entry, once called

    def key(self) -> dict:
        raise NotImplementedError

    def build(self, path: Path) -> None:
        raise NotImplementedError

    def read(self, path: Path) -> T:
        raise NotImplementedError

    def __call__(self) -> T:
        cache = EngineCache(self.cache_dir or default_cache_dir())
        loaded = cache.get(self.key(), build=self.build, load=self.read, suffix=self.suffix)
        self.status, self.seconds, self.path = loaded.status, loaded.seconds, loaded.path
        return loaded.value
