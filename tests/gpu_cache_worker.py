"""Run by tests/test_gpu_binding.py and tests/test_enginecache.py under mpiexec: each rank does the
real thing (bind a GPU, or get an entry from the engine cache) and prints one JSON line."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from mpi4py import MPI

from batchscore.config import ConfigError
from batchscore.enginecache import EngineCache, StaleEntry
from batchscore.gpu import bind_gpu

MAGIC = b"PLAN"


def bind(args: dict) -> dict:
    """`installed` stands for the node's driver listing (this machine has no GPU driver)."""
    try:
        b = bind_gpu(MPI.COMM_WORLD, share=args["share"], installed=args["installed"])
    except ConfigError as exc:
        return {"error": str(exc), "type": type(exc).__name__}
    return {"binding": None if b is None else {"index": b.index, "visible": b.visible, "physical": b.physical,
                                                "shared": b.shared},
            "connections": os.environ.get("CUDA_DEVICE_MAX_CONNECTIONS")}


def cache(args: dict) -> dict:
    """A cheap builder that logs who built, and a loader that rejects anything but a whole plan."""
    root = Path(args["root"])
    key = {"kind": "test-plan", **args["key"]}

    def build(tmp: Path) -> None:
        with open(root / "builds.log", "a") as log:
            log.write(f"{MPI.COMM_WORLD.rank}\n")
        time.sleep(args.get("build_seconds", 0.5))  # a window in which the other ranks arrive
        tmp.write_bytes(MAGIC + json.dumps(key, sort_keys=True).encode() + b"END")

    def load(path: Path) -> bytes:
        data = path.read_bytes()
        if not (data.startswith(MAGIC) and data.endswith(b"END")):
            raise StaleEntry(f"{path}: not a whole plan")
        return data

    MPI.COMM_WORLD.Barrier()
    got = EngineCache(root).get(key, build, load, suffix=".plan")
    return {"status": got.status, "path": str(got.path), "bytes": got.value.decode()}


if __name__ == "__main__":
    task = json.loads(sys.argv[2])
    result = {"bind": bind, "cache": cache}[sys.argv[1]](task)
    print(json.dumps({"rank": MPI.COMM_WORLD.rank, **result}), flush=True)
