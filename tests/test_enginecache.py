"""The engine cache with real ranks under mpiexec: one builder per key, the others wait and load the
finished entry, nothing half-written is ever read, and stale or foreign entries are rebuilt once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from batchscore.enginecache import CacheError, EngineCache, StaleEntry, key_digest
from conftest import MPIEXEC, PYTHON, ROOT, mpi_env

WORKER = str(Path(__file__).with_name("gpu_cache_worker.py"))
KEY = {"model_sha256": "ab" * 32, "gpu": "Test GPU", "tensorrt": "11.0", "max_batch": 8}


def ranks(n: int, root: Path, key: dict = KEY, build_seconds: float = 0.5) -> list[dict]:
    task = {"root": str(root), "key": key, "build_seconds": build_seconds}
    proc = subprocess.run([MPIEXEC, "--oversubscribe", "-n", str(n), PYTHON, WORKER, "cache", json.dumps(task)],
                          capture_output=True, text=True, timeout=120, env=mpi_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                  key=lambda r: r["rank"])


def builds(root: Path) -> list[str]:
    log = root / "builds.log"
    return log.read_text().split() if log.exists() else []


def test_one_rank_builds_the_others_wait_and_load(tmp_path: Path) -> None:
    rows = ranks(4, tmp_path)
    assert len(builds(tmp_path)) == 1
    assert sorted(r["status"] for r in rows) == ["built", "waited", "waited", "waited"]
    assert len({r["bytes"] for r in rows}) == 1 and len({r["path"] for r in rows}) == 1
    entry = Path(rows[0]["path"])
    assert json.loads(entry.with_name(entry.name + ".json").read_text())["key"] == {"kind": "test-plan", **KEY}
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind

    again = ranks(3, tmp_path)  # a later job: a hit everywhere, no build
    assert [r["status"] for r in again] == ["hit"] * 3 and len(builds(tmp_path)) == 1


def test_another_key_gets_its_own_entry(tmp_path: Path) -> None:
    ranks(2, tmp_path)
    rows = ranks(2, tmp_path, key={**KEY, "tensorrt": "11.1"})
    assert len(builds(tmp_path)) == 2 and len(list(tmp_path.glob("test-plan-*.plan"))) == 2
    assert "11.1" in rows[0]["bytes"]


def test_a_corrupt_entry_is_rebuilt_once_not_crashed_on(tmp_path: Path) -> None:
    entry = Path(ranks(1, tmp_path)[0]["path"])
    entry.write_bytes(b"PLAN truncated")  # e.g. a disk filled up, or another TensorRT's plan
    rows = ranks(3, tmp_path)
    assert len(builds(tmp_path)) == 2
    assert sorted(r["status"] for r in rows) == ["rebuilt", "waited", "waited"]
    assert all(r["bytes"].endswith("END") for r in rows)


def test_an_entry_without_its_sidecar_or_with_another_key_is_not_trusted(tmp_path: Path) -> None:
    entry = Path(ranks(1, tmp_path)[0]["path"])
    sidecar = entry.with_name(entry.name + ".json")
    sidecar.write_text(json.dumps({"key": {"kind": "test-plan", "other": 1}}))
    assert ranks(2, tmp_path)[0]["status"] in ("rebuilt", "waited")
    sidecar.unlink()  # a build that died between the rename and the sidecar
    assert sorted(r["status"] for r in ranks(2, tmp_path)) == ["rebuilt", "waited"]
    assert len(builds(tmp_path)) == 3


def test_a_failing_build_leaves_no_entry_and_a_loader_that_never_accepts_is_an_error(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"partial")
        raise RuntimeError("builder ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        cache.get(KEY, broken, Path.read_bytes)
    assert list(tmp_path.iterdir()) == [tmp_path / f"engine-{key_digest(KEY)}.lock"]

    def never(path: Path) -> bytes:
        raise StaleEntry(str(path))

    with pytest.raises(CacheError, match="does not load"):
        cache.get(KEY, lambda tmp: tmp.write_bytes(b"x"), never)


def test_folder_artifacts_are_renamed_into_place(tmp_path: Path) -> None:
    def build(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "weights.bin").write_bytes(b"w")

    got = EngineCache(tmp_path).get({"kind": "pkg", **KEY}, build, lambda p: (p / "weights.bin").read_bytes())
    assert got.value == b"w" and got.status == "built" and got.path.is_dir()
