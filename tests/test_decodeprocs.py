"""Decode processes for real: child processes read files, tar members and HDF5 rows, decode them into shared memory,
and hand back exactly what decoding in the rank gives; a dead one leaves the rank decoding itself."""

from __future__ import annotations

import json
import shutil
import signal
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from batchscore.decode import procs as decodeprocs
from batchscore.decode.cpu import SHARE_ROWS, CpuDecoder, decode_executor, decode_share
from batchscore.decode.procs import DecodeProcesses, decode_processes
from batchscore.pipeline import batches
from batchscore.preprocess import Preprocess
from batchscore.sources import Item, list_items
from conftest import batchscore, write_job

SPEC = Preprocess(resize=80, crop=64)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> list[Item]:
    """Every kind of item: folder files (JPEG, PNG, truncated, empty), tar members, HDF5 rows, a missing file and a
    listed-but-bad item: 16 in all, one full share."""
    root = tmp_path_factory.mktemp("decodeprocs")
    files = sorted(p for p in sample_dir.rglob("*") if p.suffix in (".jpg", ".png"))
    files = [*[p for p in files if p.suffix == ".png"][:1], *[p for p in files if p.suffix == ".jpg"][:9]]
    (root / "loose").mkdir()
    for p in files[:5]:
        shutil.copy(p, root / "loose" / p.name)
    jpeg = files[1].read_bytes()
    (root / "loose" / "cut.jpg").write_bytes(jpeg[:len(jpeg) // 3])
    (root / "loose" / "empty.jpg").write_bytes(b"")
    with tarfile.open(root / "shard.tar", "w") as tar:
        for p in files[5:]:
            tar.add(p, arcname=p.name)
    with h5py.File(root / "rows.h5", "w") as f:
        dset = f.create_dataset("images", (2,), dtype=h5py.vlen_dtype(np.uint8))
        for i in range(2):
            dset[i] = np.frombuffer(files[i].read_bytes(), np.uint8)
    items = list_items([root / "loose", root / "shard.tar", root / "rows.h5"])
    items = [*items, Item("gone", "file", str(root / "gone.jpg")), Item("bad", "bad", "x", error="unsafe path")]
    assert len(items) == SHARE_ROWS
    return items


def here(items: list[Item]) -> tuple[np.ndarray, list[str]]:
    out = np.zeros((len(items), *SPEC.shape), np.float32)
    return out, [row[0] for row in decode_share(out, items, SPEC)]


def test_decode_processes_give_what_decoding_here_gives(archive: list[Item]) -> None:
    """The same rows and errors, a share at a time, in either order; a short share fills only its rows."""
    want, errors = here(archive)
    procs = DecodeProcesses(2, SPEC.shape)
    try:
        out, back = np.full_like(want, np.nan), np.full_like(want, np.nan)
        rows, again = procs.decode(out, archive, SPEC), procs.decode(back[::-1].copy(), archive[::-1], SPEC)
        short = np.full_like(want[:3], np.nan)
        procs.decode(short, archive[:3], SPEC)
    finally:
        procs.close()
    assert [row[0] for row in rows] == errors == [row[0] for row in again[::-1]]
    ok = np.array([not e for e in errors])
    assert ok.sum() == len(archive) - 4 and np.array_equal(out[ok], want[ok]) and np.array_equal(short, want[:3])
    assert {e for e in errors if e.startswith("read failed")} == {
        f"read failed: [Errno 2] No such file or directory: '{archive[-2].path}'", "read failed: unsafe path"}
    assert all(read >= 0 and decode >= 0 for _, read, decode in rows)
    assert procs.processes == [] and not procs.broken


def test_a_decode_process_ignores_stop_signals_and_exits_when_closed(archive: list[Item]) -> None:
    """Slurm signals every process of the step: the rank finishes its batch, so its decode processes go on."""
    want, errors = here(archive)
    procs = DecodeProcesses(1, SPEC.shape)
    process = procs.processes[0].popen
    try:
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGUSR1)
        process.send_signal(signal.SIGINT)
        out = np.zeros_like(want)
        assert [row[0] for row in procs.decode(out, archive, SPEC)] == errors
    finally:
        procs.close()
    assert process.returncode == 0 and not procs.broken


def test_a_dead_decode_process_leaves_the_rank_decoding_itself(archive: list[Item]) -> None:
    warnings: list[str] = []
    want, errors = here(archive)
    procs = DecodeProcesses(2, SPEC.shape, warn=warnings.append)
    try:
        procs.processes[0].popen.kill()
        procs.processes[0].popen.wait()
        outs = [np.zeros_like(want) for _ in range(3)]
        rows = [procs.decode(out, archive, SPEC) for out in outs]  # the dead one is met on the first
    finally:
        procs.close()
    ok = np.array([not e for e in errors])
    assert all([row[0] for row in r] == errors for r in rows) and all(np.array_equal(o[ok], want[ok]) for o in outs)
    assert warnings == [f"a decode process failed (exit status {-signal.SIGKILL}); decoding in the worker threads "
                        "from now on"]


@pytest.mark.parametrize("kind,workers,cores,count", [("auto", 3, 2, 0), ("auto", 5, 4, 5), ("process", 3, 2, 3),
                                                       ("thread", 17, 16, 0), ("process", 0, 1, 0)])
def test_worker_kind_chooses_processes_from_four_cores_on_auto(kind: str, workers: int, cores: int,
                                                               count: int) -> None:
    """auto: threads on fewer than PROCESS_CORES cores, processes from there; workers = 0 decodes inline."""
    with decode_processes(kind, workers, cores, SPEC.shape, pytest.fail) as procs:
        assert (procs.count if procs else 0) == count == len(procs.processes if procs else [])
    assert procs is None or procs.processes == []


def test_decode_processes_that_cannot_start_leave_threads_and_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decodeprocs.sys, "executable", "/nonexistent/python")
    warnings: list[str] = []
    with decode_processes("process", 2, 2, SPEC.shape, warnings.append) as procs:
        assert procs is None
    assert len(warnings) == 1 and "cannot start decode processes" in warnings[0] and "nonexistent" in warnings[0]
    assert warnings[0].endswith("decoding in 2 threads")


def test_batches_through_processes_match_threads_in_order(archive: list[Item]) -> None:
    """The pipeline with processes: batches in input order, shares across processes, the same tensors and errors
    as its threads give (a batch size that leaves a short last batch and shares of unequal length)."""
    items = archive * 3
    with decode_executor(3) as pool:
        threads = list(batches(items, CpuDecoder(SPEC, pool), 20, prefetch=2))
        with decode_processes("process", 3, 2, SPEC.shape, print) as procs:
            assert procs is not None
            procs_batches = list(batches(items, CpuDecoder(SPEC, pool, procs=procs), 20, prefetch=2))
    assert [len(b.keys) for b in procs_batches] == [20, 20, 8]
    for a, b in zip(threads, procs_batches):
        assert a.keys == b.keys and a.errors == b.errors and np.array_equal(a.tensors, b.tensors)
        assert b.decoders == a.decoders and b.read_seconds > 0 and b.decode_seconds > 0


def test_a_consumer_that_stops_early_leaves_no_process_and_no_warning(archive: list[Item]) -> None:
    """As a rank stopped by a signal: shares still running finish before their processes are closed."""
    warnings: list[str] = []
    with decode_processes("process", 2, 2, SPEC.shape, warnings.append) as procs, decode_executor(2) as pool:
        decoded = batches(archive * 4, CpuDecoder(SPEC, pool, procs=procs), 8, prefetch=3)
        first = next(decoded)
        decoded.close()  # cancels the batches not started; the running shares finish
    assert len(first.keys) == 8 and warnings == [] and procs.processes == [] and not procs.broken


def test_score_with_processes_and_threads_gives_the_same_file(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    """`--worker-kind` on the command line, the summary says which ran, and the scores agree exactly."""
    scores = {}
    for kind in ("process", "thread"):
        job = write_job(tmp_path / f"{kind}.toml", input=str(sample_dir), model=str(model),
                        output=str(tmp_path / kind), batch_size=16, workers=2, threads=1)
        res = batchscore("score", "--job", str(job), "--worker-kind", kind)
        assert res.returncode == 0, res.stdout + res.stderr
        summary = json.loads((tmp_path / kind / "summary.json").read_text())
        assert summary["per_rank"][0]["worker_kind"] == kind and summary["per_rank"][0]["workers"] == 2
        with h5py.File(tmp_path / kind / "scores.h5", "r") as f:
            scores[kind] = {name: f[name][:] for name in ("key", "status", "topk_index", "topk_score")}
    for name, values in scores["process"].items():
        assert np.array_equal(values, scores["thread"][name]), name
