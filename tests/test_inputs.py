"""Hostile inputs end as rows, never as an aborted, hung or runaway job (issue 32, classes 1, 2, 5 and 6).

Each test builds the real files (special files, links, loops, damaged tars and HDF5, names that are not UTF-8)
and scores them with the real command, under mpiexec where ranks matter, reading scores.h5 back.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import MPIEXEC, PYTHON, ROOT, batchscore, mpi_env, write_job

from batchscore.preprocess import DecodeError, Preprocess, preprocess
from batchscore.sources import MAX_IMAGE_BYTES, SourceError, list_items, read_file


def encoded(fmt: str, size: tuple[int, int] = (96, 64), **kw: object) -> bytes:
    """A small real image in `fmt`, with some structure for the decoder to chew on."""
    rng = np.random.default_rng(len(fmt))
    arr = rng.integers(0, 255, (size[1], size[0], 3), np.uint8)
    arr[:, : size[0] // 2] //= 4
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def dds_unknown_format() -> bytes:
    """DDS bytes with a FourCC Pillow does not implement: Image.open raises NotImplementedError."""
    data = bytearray(encoded("DDS", (64, 64)))
    data[80:84], data[84:88] = struct.pack("<I", 4), b"ZZZZ"  # pixel format flags = FOURCC, FourCC = "ZZZZ"
    return bytes(data)


def run(tmp_path: Path, inputs: list[Path], model: Path, ranks: int = 2, timeout: float = 180,
        **extra: object) -> tuple[subprocess.CompletedProcess, dict[str, tuple[int, str]], dict]:
    """Score `inputs`; the rows (key -> status, error) and summary.json of a finished run."""
    job = write_job(tmp_path / "job.toml", input=[str(p) for p in inputs], model=str(model),
                    output=str(tmp_path / "out"), **{"batch_size": 4, "top_k": 3, "workers": 2, **extra})
    res = batchscore("score", "--job", str(job), ranks=ranks, timeout=timeout)
    return (res, *read_result(tmp_path / "out")) if res.returncode == 0 else (res, {}, {})


def read_result(out: Path) -> tuple[dict[str, tuple[int, str]], dict]:
    with h5py.File(out / "scores.h5", "r") as f:
        keys = [k.decode("utf-8", "surrogateescape") for k in f["key"][:]]  # the names' bytes, as documented
        rows = dict(zip(keys, zip(f["status"][:].tolist(), f["error"].asstr(errors="surrogateescape")[:])))
    return rows, json.loads((out / "summary.json").read_text())


# -- 1. one file aborts the whole job ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["thread", "process"])
def test_any_decoder_exception_and_any_name_is_one_row(tmp_path: Path, sample_dir: Path, model: Path,
                                                      kind: str) -> None:
    """Pillow's NotImplementedError (DDS bytes named .jpg) and SyntaxError (a corrupt EXIF block, raised while
    transposing) are error rows naming the type, in decode threads and processes; names that are not UTF-8 (a
    file, a tar member, a list file's line) are scored and stored as their bytes."""
    root = tmp_path / "in"
    root.mkdir()
    good = sorted(sample_dir.glob("*/*.jpg"))[:3]
    for p in good:
        shutil.copy(p, root / p.name)
    (root / "dds.jpg").write_bytes(dds_unknown_format())
    (root / "exif.png").write_bytes(encoded("PNG", exif=b"garbage!!"))
    (root / "exif.webp").write_bytes(encoded("WEBP", exif=b"garbage!!"))
    jpeg = good[0].read_bytes()
    with open(os.fsencode(root) + b"/caf\xe9.jpg", "wb") as f:  # Latin-1 bytes: not UTF-8
        f.write(jpeg)
    with tarfile.open(root / "shard.tar", "w", format=tarfile.GNU_FORMAT, errors="surrogateescape") as tar:
        info = tarfile.TarInfo(os.fsdecode(b"na\xefve.jpg"))
        info.size = len(jpeg)
        tar.addfile(info, io.BytesIO(jpeg))
    listed = tmp_path / "listed"
    listed.mkdir()
    with open(os.fsencode(listed) + b"/\xff\xfe.jpg", "wb") as f:
        f.write(jpeg)
    (listed / "files.txt").write_bytes(b"# a list file with a name that is not UTF-8\n\xff\xfe.jpg\n")

    res, rows, summary = run(tmp_path, [root, listed / "files.txt"], model, worker_kind=kind)
    assert res.returncode == 0, res.stderr[-3000:]
    assert {r["worker_kind"] for r in summary["per_rank"]} == {kind}
    assert rows["dds.jpg"][0] == 1 and "NotImplementedError" in rows["dds.jpg"][1]
    for key in ("exif.png", "exif.webp"):
        assert rows[key][0] == 1 and "SyntaxError" in rows[key][1], rows[key]
    weird = [os.fsdecode(b"caf\xe9.jpg"), "shard.tar:" + os.fsdecode(b"na\xefve.jpg"), os.fsdecode(b"\xff\xfe.jpg")]
    assert all(rows[k] == (0, "") for k in weird + [p.name for p in good])
    assert len(rows) == 3 + 3 + 3
    with h5py.File(tmp_path / "out" / "scores.h5", "r") as f:  # the raw bytes are what is stored
        assert {b"caf\xe9.jpg", b"shard.tar:na\xefve.jpg", b"\xff\xfe.jpg"} <= set(f["key"][:].tolist())


def test_malformed_hdf5_and_special_inputs_exit_2_with_one_line(tmp_path: Path, model: Path) -> None:
    png = encoded("PNG")
    cases = {"group": "is a group", "scalar": "of shape ()", "keys": "'keys' row 1 is not UTF-8"}
    for name, message in cases.items():
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as f:
            if name == "group":
                f.create_group("images").create_dataset("x", data=[1])
            elif name == "scalar":
                f.create_dataset("images", data=np.void(png))
            else:
                rows = np.empty(2, dtype=object)
                rows[:] = [np.frombuffer(png, np.uint8)] * 2
                f.create_dataset("images", data=rows, dtype=h5py.vlen_dtype(np.uint8))
                f.create_dataset("keys", data=np.array([b"ok", b"bad\xff"], dtype=object),
                                 dtype=h5py.string_dtype("ascii"))
        res = batchscore("score", "--input", str(path), "--model", str(model), "--output", str(tmp_path / name))
        assert res.returncode == 2 and message in res.stderr, (name, res.stderr[-2000:])
        assert "Traceback" not in res.stderr and len([line for line in res.stderr.splitlines()
                                                      if str(path) in line]) == 1
    for name in ("fifo.h5", "fifo.tar", "fifo.txt"):  # opening one would wait for a writer forever
        os.mkfifo(tmp_path / name)
        res = batchscore("score", "--input", str(tmp_path / name), "--model", str(model), "--output",
                         str(tmp_path / "fifo"), timeout=60)
        assert res.returncode == 2 and "not a regular file" in res.stderr, (name, res.stderr[-2000:])


def mutations(data: bytes, rng: np.random.Generator) -> bytes:
    """One random damage of an encoding: flipped bytes, a cut, an inserted or repeated run, a zeroed run."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        op, at = int(rng.integers(0, 5)), int(rng.integers(0, max(1, len(buf))))
        if op == 0:
            for _ in range(int(rng.integers(1, 9))):
                buf[int(rng.integers(0, len(buf)))] = int(rng.integers(0, 256))
        elif op == 1:
            buf = buf[:at]
        elif op == 2:
            buf[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), np.uint8).tobytes()
        elif op == 3:
            buf[at:at] = buf[at:at + int(rng.integers(1, 256))]
        else:
            buf[at:at + int(rng.integers(1, 32))] = bytes(min(32, len(buf) - at))
        if not buf:
            break
    return bytes(buf)


#: the formats the inputs name (sources.IMAGE_EXTENSIONS) plus formats Pillow identifies by content whatever the
#: name says (a .jpg holding DDS, ICO, TGA, PPM or PCX bytes reaches the decoder as well)
FUZZ_SEEDS = {
    "jpeg": lambda: encoded("JPEG", quality=80),
    "jpeg+exif": lambda: encoded("JPEG", exif=Image.Exif().tobytes() + b"\x00" * 4),
    "progressive jpeg": lambda: encoded("JPEG", progressive=True),
    "png": lambda: encoded("PNG"),
    "png+exif": lambda: encoded("PNG", exif=b"MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01"
                                              b"\x00\x06\x00\x00\x00\x00\x00\x00"),
    "palette png": lambda: _palette_png(),
    "bmp": lambda: encoded("BMP"),
    "gif": lambda: encoded("GIF"),
    "tiff": lambda: encoded("TIFF"),
    "tiff lzw": lambda: encoded("TIFF", compression="tiff_lzw"),
    "webp": lambda: encoded("WEBP"),
    "webp+exif": lambda: encoded("WEBP", exif=b"MM\x00*\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01"
                                               b"\x00\x06\x00\x00\x00\x00\x00\x00"),
    "dds": lambda: encoded("DDS", (64, 64)),
    "ico": lambda: encoded("ICO", (32, 32)),
    "tga": lambda: encoded("TGA"),
    "ppm": lambda: encoded("PPM"),
    "pcx": lambda: encoded("PCX"),
}
FUZZ_SECONDS = 24.0


def _palette_png() -> bytes:
    buf = io.BytesIO()
    Image.new("P", (80, 40), 3).save(buf, "PNG", transparency=3)
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore")  # damaged files make Pillow warn (corrupt EXIF ...): not the subject
def test_fuzzed_encodings_are_arrays_or_decode_errors() -> None:
    """An in-process fuzzer, bounded in time: every damaged encoding of every format gives a tensor or a
    DecodeError (an error row), nothing else, with and without JPEG draft decoding."""
    spec = Preprocess(max_pixels=4_000_000)  # damaged headers may claim large sizes: keep each try short
    rng = np.random.default_rng(32)
    seeds = {name: make() for name, make in FUZZ_SEEDS.items()}
    tries = dict.fromkeys(seeds, 0)
    deadline = time.monotonic() + FUZZ_SECONDS
    share = FUZZ_SECONDS / len(seeds)
    for n, (name, seed) in enumerate(seeds.items()):
        assert preprocess(seed, spec).shape == spec.shape, name  # the undamaged seed decodes
        until = min(deadline, time.monotonic() + share)
        while time.monotonic() < until:
            data = mutations(seed, rng)
            try:
                out = preprocess(data, spec, draft=bool(tries[name] % 2))
                assert out.shape == spec.shape and out.dtype == np.float32
            except DecodeError as exc:
                assert str(exc)
            except BaseException as exc:  # noqa: BLE001 - the point: report the input that escaped
                pytest.fail(f"{name}: {type(exc).__name__}: {exc}; input (hex): {data.hex()}")
            tries[name] += 1
    assert min(tries.values()) >= 20, tries


# -- 2. hangs and runaway listings -------------------------------------------------------------------------------

def test_special_files_links_and_loops_give_one_row_each(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    """A FIFO, a link to /dev/zero, a socket and an oversized file named .jpg are error rows (no blocked rank, no
    endless read); two symlink loops and a second link to a folder list nothing twice and are counted, as is a
    hidden folder."""
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    good = sorted(sample_dir.glob("*/*.jpg"))[:3]
    for p in good:
        shutil.copy(p, root / "sub" / p.name)
    os.mkfifo(root / "fifo.jpg")
    os.symlink("/dev/zero", root / "zero.jpg")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "sock.jpg"))
    with open(root / "huge.jpg", "wb") as f:  # sparse: takes no disk
        f.truncate(MAX_IMAGE_BYTES + 1)
    os.symlink(".", root / "loop")
    os.symlink("..", root / "sub" / "up")
    os.symlink("sub", root / "alias")
    (root / ".hidden").mkdir()  # not walked, as before: counted now
    shutil.copy(good[0], root / ".hidden" / "x.jpg")
    try:
        res, rows, summary = run(tmp_path, [root], model, timeout=120)
    finally:
        server.close()
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(k for k, (s, _) in rows.items() if s == 0) == [f"sub/{p.name}" for p in good]
    assert "not a regular file (a FIFO)" in rows["fifo.jpg"][1]
    assert "not a regular file (a character device)" in rows["zero.jpg"][1]
    assert rows["sock.jpg"][0] == 1 and "too large" in rows["huge.jpg"][1]
    assert len(rows) == 3 + 4
    assert summary["skipped"] == {"repeated_folders": 3, "hidden_folders": 1}


def test_a_file_longer_than_its_stat_size_is_read_to_its_end() -> None:
    """`read_file` sizes its read by fstat; a file holding more than that (procfs says 0 bytes, a file being
    written grows) is read on to its end, not cut at the size fstat gave."""
    path = "/proc/self/cmdline"
    assert os.stat(path).st_size == 0
    assert read_file(path) == Path(path).read_bytes() != b""


def test_rank_0_waits_for_a_slow_rank_without_spinning() -> None:
    """Rank 0's wait for the other ranks' last progress message sleeps between looks (a blocking MPI receive
    busy-waits: a stuck rank cost rank 0 a whole core)."""
    script = textwrap.dedent("""
        import time
        from mpi4py import MPI
        from batchscore.comm import Progress
        comm = MPI.COMM_WORLD
        progress = Progress(comm, total=2, enabled=False)
        if comm.rank == 1:
            time.sleep(4)
        cpu, wall = time.process_time(), time.perf_counter()
        progress.close(1)
        if comm.rank == 0:
            print("cpu", time.process_time() - cpu, "wall", time.perf_counter() - wall, flush=True)
    """)
    res = subprocess.run([MPIEXEC, "--oversubscribe", "-n", "2", PYTHON, "-c", script], capture_output=True,
                         text=True, timeout=120, env=mpi_env(), cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    _, cpu, _, wall = res.stdout.split()
    assert float(wall) > 3 and float(cpu) < 0.1 * float(wall), res.stdout


# -- 5. resource bounds ------------------------------------------------------------------------------------------

def test_extreme_aspect_ratio_is_scored_in_small_memory() -> None:
    """A 30000x1 PNG (and 1x30000) is resized without a gigapixel intermediate: under a 2 GiB address-space
    limit the centre colour comes out right and the peak resident size stays small."""
    script = textwrap.dedent("""
        import io, resource, sys
        import numpy as np
        from PIL import Image
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
        from batchscore.preprocess import Preprocess, preprocess
        spec = Preprocess()
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for shape in ((1, 30000, 3), (30000, 1, 3)):
            arr = np.zeros(shape, np.uint8)
            centre = [slice(None)] * 3
            centre[0 if shape[0] > 1 else 1] = slice(14990, 15010)
            arr[tuple(centre)] = (200, 100, 50)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "PNG")
            out = preprocess(buf.getvalue(), spec)
            colour = out.reshape(3, -1).mean(1) * np.array(spec.std) + np.array(spec.mean)
            print(len(buf.getvalue()), *np.round(colour * 255).astype(int))
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
    """)
    res = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    *strips, grew_mb = res.stdout.split("\n")[:-1]
    for line in strips:
        size, *colour = map(int, line.split())
        assert size < 1000 and colour == [200, 100, 50], line
    assert int(grew_mb) < 200, res.stdout  # MB beyond the interpreter and imports


def test_more_tar_shards_than_open_files(tmp_path: Path, model: Path) -> None:
    """1,100 one-image shards under a 1,024 open-file limit: a reader keeps a few shards open, not all."""
    import resource

    root = tmp_path / "shards"
    root.mkdir()
    png = encoded("PNG", (32, 32))
    for i in range(1100):
        with tarfile.open(root / f"shard-{i:04d}.tar", "w") as tar:
            info = tarfile.TarInfo(f"img-{i:04d}.png")
            info.size = len(png)
            tar.addfile(info, io.BytesIO(png))
    job = write_job(tmp_path / "job.toml", input=str(root), model=str(model), output=str(tmp_path / "out"),
                    batch_size=64, top_k=1, workers=1)  # one rank, one decode thread: one reader meets every shard

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    res = subprocess.run([MPIEXEC, "-n", "1", PYTHON, "-m", "batchscore", "score", "--job", str(job)],
                         capture_output=True, text=True, timeout=300, env=mpi_env(), cwd=ROOT, preexec_fn=lower)
    assert res.returncode == 0, res.stderr[-3000:]
    rows, summary = read_result(tmp_path / "out")
    assert len(rows) == 1100 and all(status == 0 for status, _ in rows.values())
    assert summary["images"]["ok"] == 1100


# -- 6. nothing silently lost -----------------------------------------------------------------------------------

def add(tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_unlistable_folders_tar_links_and_cut_tars_are_rows(sample_dir: Path, model: Path) -> None:
    """A folder that cannot be listed is a row; a tar's hard link is scored as its target and its symlink is a
    row; a tar cut inside a member keeps its intact members and makes the cut one a "truncated" row; a tar cut
    inside a header is counted in summary.json. Run as an unprivileged user (root lists any folder)."""
    work = Path(tempfile.mkdtemp(prefix="batchscore-inputs-"))
    try:
        root = work / "in"
        (root / "locked").mkdir(parents=True)
        jpegs = [p.read_bytes() for p in sorted(sample_dir.glob("*/*.jpg"))[:3]]
        (root / "ok.jpg").write_bytes(jpegs[0])
        (root / "locked" / "hidden.jpg").write_bytes(jpegs[1])
        with tarfile.open(root / "links.tar", "w") as tar:
            add(tar, "a.jpg", jpegs[2])
            add(tar, "hard.jpg", kind=tarfile.LNKTYPE, link="a.jpg")
            add(tar, "sym.jpg", kind=tarfile.SYMTYPE, link="a.jpg")
            add(tar, "dangling.jpg", kind=tarfile.LNKTYPE, link="nowhere.jpg")
        cut = work / "cut.tar"
        with tarfile.open(cut, "w") as tar:
            for i, data in enumerate(jpegs):
                add(tar, f"{i}.jpg", data)
        with tarfile.open(cut) as tar:
            third = tar.getmember("2.jpg").offset_data
        cut.write_bytes(cut.read_bytes()[:third + len(jpegs[2]) // 2])
        with tarfile.open(root / "cuthead.tar", "w") as tar:
            add(tar, "first.jpg", jpegs[0])
            add(tar, "second.jpg", jpegs[1])
        with tarfile.open(root / "cuthead.tar") as tar:
            second = tar.getmember("second.jpg").offset
        (root / "cuthead.tar").write_bytes((root / "cuthead.tar").read_bytes()[:second + 300])
        for path in [work, *work.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
        (root / "locked").chmod(0)
        out = work / "out"
        job = write_job(work / "job.toml", input=[str(root), str(cut)], model=str(model), output=str(out),
                        batch_size=4, top_k=3, workers=2)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        # one rank: what is listed does not depend on the ranks (rank 0 lists), and prterun will not start an
        # interpreter under /root for another user
        res = subprocess.run([*drop, PYTHON, "-m", "batchscore", "score", "--job", str(job)], capture_output=True,
                             text=True, timeout=180, env={**mpi_env(), "HOME": str(work)}, cwd=ROOT)
        assert res.returncode == 0, res.stderr[-3000:]
        rows, summary = read_result(out)
        with h5py.File(out / "scores.h5", "r") as f:
            scores = dict(zip(f["key"].asstr()[:], f["topk_score"][:]))
    finally:
        for path in [work, *work.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(stat.S_IRWXU)
        shutil.rmtree(work)
    assert rows["locked/"][0] == 1 and "cannot list folder: Permission denied" in rows["locked/"][1]
    assert rows["links.tar:hard.jpg"] == (0, "") and np.array_equal(scores["links.tar:hard.jpg"],
                                                                   scores["links.tar:a.jpg"])
    assert rows["links.tar:sym.jpg"][0] == 1 and "symbolic link" in rows["links.tar:sym.jpg"][1]
    assert rows["links.tar:dangling.jpg"][0] == 1 and "hard link" in rows["links.tar:dangling.jpg"][1]
    assert rows["cut.tar:0.jpg"] == rows["cut.tar:1.jpg"] == (0, "")
    assert rows["cut.tar:2.jpg"][0] == 1 and "truncated" in rows["cut.tar:2.jpg"][1]
    assert "compressed" not in rows["cut.tar:2.jpg"][1]
    assert rows["cuthead.tar:first.jpg"] == (0, "") and "cuthead.tar:second.jpg" not in rows
    assert summary["skipped"] == {"tar_damaged_tails": 1}
    assert len(rows) == 1 + 1 + 4 + 3 + 1
    assert not [k for k in rows if k.startswith("locked/") and k != "locked/"]


def test_a_tar_cut_in_its_first_header_says_truncated_and_a_gzip_says_compressed(tmp_path: Path) -> None:
    """Given as inputs, a tar with no readable member is exit 2 at start, saying which of the two it is."""
    with tarfile.open(tmp_path / "whole.tar", "w") as tar:
        add(tar, "a.jpg", encoded("JPEG"))
    whole = (tmp_path / "whole.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(whole[:300])
    (tmp_path / "packed.tar").write_bytes(gzip.compress(whole))
    with pytest.raises(SourceError, match="truncated before its first member or not a tar"):
        list_items([tmp_path / "cut.tar"])
    with pytest.raises(SourceError, match="compressed tars are not supported"):
        list_items([tmp_path / "packed.tar"])
