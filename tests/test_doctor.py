"""`batchscore doctor` for real: this machine (CPU only), 1 and 2+ ranks, and planted problems with their fixes."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
from collections import defaultdict
from itertools import takewhile
from pathlib import Path

import pytest

from batchscore.comm import cores_for_rank
from batchscore.doctor.job import cache_checks, hdf5_locking, output_checks
from batchscore.doctor.ranks import RankView, gpus_check
from batchscore.enginecache import EngineCache
from batchscore.engines import choose_backend
from batchscore.engines.toolchain import cpu_features, links_libstdcxx_statically
from batchscore.sources import list_items
from conftest import PYTHON, ROOT, batchscore, mpi_env, write_job

LINE = re.compile(r"^(OK|WARN|FAIL)\s+(\S+)\s+(.*)$")


def parse(stdout: str) -> tuple[dict[str, list[tuple[str, str, str]]], list[list[str]]]:
    """Checks by name as (status, detail, fix), and the rank table's rows."""
    checks: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        m = LINE.match(line)
        if m:
            nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
            checks[m[2]].append((m[1], m[3], nxt[len("fix: "):] if nxt.startswith("fix: ") else ""))
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rank", "host"])
    rows = [line.split() for line in takewhile(lambda line: line.startswith("  "), lines[head + 1:])]
    return checks, rows


def statuses(checks: dict, name: str) -> list[str]:
    return [c[0] for c in checks[name]]


@pytest.fixture()
def good_job(tmp_path: Path, sample_dir: Path, model: Path) -> Path:
    return write_job(tmp_path / "job.toml", input=str(sample_dir), model=str(model), output=str(tmp_path / "out"))


def test_one_process_reports_this_machine() -> None:
    res = batchscore("doctor")
    assert res.returncode == 0, res.stdout + res.stderr
    checks, rows = parse(res.stdout)
    assert statuses(checks, "mpi") == ["OK"] and "Open MPI" in checks["mpi"][0][1]
    assert checks["launcher"][0][:2] == ("OK", "none (one process), 1 rank(s)")
    backend, reason = choose_backend("auto")
    assert checks["backend"][0] == ("OK", f"auto → {backend} ({reason})", "")
    assert checks["onnxruntime"][0][0] == "OK" and "CPUExecutionProvider" in checks["onnxruntime"][0][1]
    assert checks["decoder"][0][:2] == ("OK", "Pillow: decoded a JPEG to (3, 224, 224)")
    assert checks["decoder"][1][:2] == ("OK", "Pillow in a decode process (worker_kind, from 4 cores a rank): "
                                              "decoded a JPEG to (3, 224, 224)")
    assert rows == [["0", socket.gethostname(), "0", str(cores_for_rank(1)), "cpu", "-", "-"]]
    assert res.stdout.rstrip().endswith("0 FAIL")


def test_two_ranks_table_and_job(good_job: Path, sample_dir: Path) -> None:
    res = batchscore("doctor", "--job", str(good_job), ranks=2)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("batchscore doctor:") == 1  # rank 0 alone prints
    checks, rows = parse(res.stdout)
    assert checks["launcher"][0][:2] == ("OK", "mpiexec (Open MPI), 2 rank(s)")
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [("0", socket.gethostname(), "0", "cpu"),
                                                         ("1", socket.gethostname(), "1", "cpu")]
    assert checks["input"][0][:2] == ("OK", f"{len(list_items([sample_dir]))} images in {sample_dir}")
    assert checks["model"][0][0] == "OK" and "ONNX Runtime ran one image → logits (1, 10)" in checks["model"][0][1]
    assert statuses(checks, "output") == ["OK"] and statuses(checks, "filesystem") == ["OK"]
    assert not any(s == "FAIL" for cs in checks.values() for s, _, _ in cs)


@pytest.mark.skipif((os.cpu_count() or 1) >= 3, reason="needs more ranks than cores; this machine has >= 3 cores")
def test_more_ranks_than_cores_warns() -> None:
    res = batchscore("doctor", ranks=3)
    assert res.returncode == 0, res.stdout + res.stderr  # a WARN alone does not fail
    checks, rows = parse(res.stdout)
    status, detail, fix = checks["cores"][0]
    assert status == "WARN" and f"3 ranks on {os.cpu_count()} cores" in detail and "--ntasks-per-node" in fix
    assert [r[0] for r in rows] == ["0", "1", "2"]


def test_planted_problems_fail_with_their_fix(tmp_path: Path, sample_dir: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    job = write_job(tmp_path / "bad.toml", input=str(sample_dir), model=str(tmp_path / "missing.onnx"),
                    output=str(blocker / "out"), backend="tensorrt")
    res = batchscore("doctor", "--job", str(job))
    assert res.returncode == 1, res.stdout + res.stderr
    checks, _ = parse(res.stdout)
    if importlib.util.find_spec("tensorrt") is None:
        status, detail, fix = checks["backend"][1]
        assert status == "FAIL" and detail.startswith("tensorrt → tensorrt, which needs tensorrt (not installed)")
        assert fix == 'install what is missing, or set backend = "onnxruntime" in the job'
    status, detail, fix = checks["model"][0]
    assert status == "FAIL" and "model not found" in detail and fix == f"set model in {job} to a readable .onnx file"
    status, detail, fix = checks["output"][0]
    assert status == "FAIL" and f"{blocker} is a file, not a folder" in detail and "set output in the job file" in fix
    assert statuses(checks, "input") == ["OK"]


def test_existing_result_warns_but_passes(tmp_path: Path, good_job: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "scores.h5").write_bytes(b"")
    res = batchscore("doctor", "--job", str(good_job))
    assert res.returncode == 0, res.stdout + res.stderr
    checks, _ = parse(res.stdout)
    assert checks["output"][0][0] == "WARN" and "--overwrite" in checks["output"][0][2]


def test_broken_job_file_fails(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('input = "x"\nmodle = "m.onnx"\n')
    res = batchscore("doctor", "--job", str(job))
    assert res.returncode == 1
    checks, _ = parse(res.stdout)
    assert checks["job"][0][0] == "FAIL" and "modle: unknown key" in checks["job"][0][1]


@pytest.mark.skipif(os.geteuid() != 0, reason="the Open MPI root check applies to root only")
def test_root_without_open_mpi_settings_warns() -> None:
    env = {k: v for k, v in mpi_env().items() if "RUN_AS_ROOT" not in k}
    res = subprocess.run([PYTHON, "-m", "batchscore", "doctor"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    checks, _ = parse(res.stdout)
    status, detail, fix = checks["root"][0]
    assert status == "WARN" and "PRTE_ALLOW_RUN_AS_ROOT" in detail
    assert fix.startswith("export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PRTE_ALLOW_RUN_AS_ROOT=1")


def test_stale_cache_entries_warn_and_the_fix_clears_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch installed: entries are checked against the versions installed here")
    from importlib.metadata import version

    cache = EngineCache(tmp_path / "cache")
    build = lambda path: path.write_bytes(b"artifact")  # noqa: E731
    fresh = cache.get({"kind": "torch-aoti", "torch": version("torch")}, build, Path.read_bytes).path
    old = cache.get({"kind": "torch-aoti", "torch": "1.0.0"}, build, Path.read_bytes).path
    gone = cache.get({"kind": "torch-aoti", "torch": version("torch"), "n": 2}, build, Path.read_bytes).path
    gone.unlink()
    # an earlier version's compiled-mode artifact: same software, but nothing reads that kind any more
    left = cache.get({"kind": "torch-inductor", "torch": version("torch")}, build, Path.read_bytes).path
    monkeypatch.setenv("BATCHSCORE_CACHE", str(cache.root))

    res = batchscore("doctor")
    assert res.returncode == 0, res.stdout + res.stderr
    checks, _ = parse(res.stdout)
    status, detail, fix = checks["cache"][0]
    assert status == "WARN" and "3 stale entr(ies), 1 usable" in detail
    assert f"{old.name} (torch 1.0.0, here {version('torch')})" in detail and f"{gone.name} (built file missing)" in detail
    assert f"{left.name} (kind torch-inductor: built by another batchscore version" in detail
    assert fix.startswith("rm -rf ") and fresh.name not in fix

    subprocess.run(fix.split("   (")[0], shell=True, check=True)
    checks, _ = parse(batchscore("doctor").stdout)
    assert checks["cache"][0][:2] == ("OK", f"{cache.root}: 1 entr(ies) usable here")


def test_network_filesystem_gets_the_hdf5_locking_advice(tmp_path: Path) -> None:
    pytest.importorskip("batchscore.h5lock", reason="HDF5 lock probe module not in this tree")
    local = output_checks(tmp_path / "out", overwrite=False)[-1]  # the real probe on this machine's filesystem
    assert local.status == "OK" and local.detail.endswith("HDF5 file locking works there")
    for fstype in ("nfs4", "lustre", "fuse.beegfs"):
        check = hdf5_locking(fstype, env={})
        assert check.status == "WARN" and check.fix.startswith("export HDF5_USE_FILE_LOCKING=FALSE")
        assert hdf5_locking(fstype, env={"HDF5_USE_FILE_LOCKING": "FALSE"}).status == "OK"
    assert hdf5_locking("ext4", env={}).status == "OK"


def _slurm_works() -> bool:
    if not shutil.which("srun") or not shutil.which("sinfo"):
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _slurm_works(), reason="no working Slurm (srun/sinfo) on this machine")
def test_srun_without_pmix_is_a_fail_with_the_srun_fix() -> None:
    res = subprocess.run(["srun", "--immediate=30", "--mpi=none", "-n", "2", PYTHON, "-m", "batchscore", "doctor"],
                         capture_output=True, text=True, env=mpi_env(), cwd=ROOT, timeout=180)
    if "Unable to allocate resources" in res.stderr:
        pytest.skip(f"Slurm could not allocate 2 tasks now: {res.stderr.strip()}")
    assert res.returncode != 0
    checks, _ = parse(res.stdout)
    assert "srun --mpi=none started 2 ranks but MPI sees a world of 1" in checks["launcher"][0][1]
    assert checks["launcher"][0][2].startswith("srun --mpi=pmix")
    assert statuses(checks, "launcher") == ["FAIL", "FAIL"]  # one report per task: each thinks it is alone


def test_doctor_help_needs_no_mpi_and_no_job() -> None:
    res = batchscore("doctor", "--help")
    assert res.returncode == 0 and "--job FILE" in res.stdout and "fix" in res.stdout


def _view(rank: int, uuid: str) -> RankView:
    return RankView(rank, "node1", rank, 2, 8, frozenset({rank}), 4, "cuda:0", "0", uuid, "srun --mpi=pmix", 2)


def test_two_ranks_on_one_gpu_fail_only_when_a_gpu_backend_would_stop() -> None:
    shared = [_view(0, "GPU-aaaa"), _view(1, "GPU-aaaa")]
    check = gpus_check(shared, "tensorrt", on_gpu_backend=True, share=False)
    assert check.status == "FAIL" and "ranks 0,1 on node1 share GPU-aaaa" in check.detail
    assert "srun --gpus-per-task=1" in check.fix and "share_gpus = true" in check.fix
    assert gpus_check(shared, "onnxruntime", on_gpu_backend=False, share=False).status == "WARN"
    assert gpus_check(shared, "tensorrt", on_gpu_backend=True, share=True).status == "OK"
    assert gpus_check([_view(0, "GPU-aaaa"), _view(1, "GPU-bbbb")], "tensorrt", True, False).status == "OK"


def static_gxx(folder: Path) -> Path:
    """A real compiler that copies libstdc++ into what it links: g++ behind a script adding -static-libstdc++,
    as the GPU machines' $CXX (/opt/gcc/bin/g++) is; with the assembler, linker and nm beside it, so that a PATH
    of this folder alone works."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "g++"
    wrapper.write_text(f'#!/bin/sh\nexec "{shutil.which("g++")}" "$@" -static-libstdc++\n')
    wrapper.chmod(0o755)
    for tool in ("as", "ld", "nm"):
        (folder / tool).symlink_to(shutil.which(tool))
    return wrapper


@pytest.mark.skipif(not all(map(shutil.which, ("g++", "as", "ld", "nm"))), reason="needs g++ and binutils")
def test_a_compiler_that_links_libstdcxx_statically_is_told_apart(tmp_path: Path) -> None:
    """The probe links a small library that uses libstdc++'s locale code, as the package's std::regex does:
    the system g++ leaves libstdc++ shared, the same g++ with -static-libstdc++ copies it in."""
    assert links_libstdcxx_statically(shutil.which("g++")) is False
    assert links_libstdcxx_statically(str(static_gxx(tmp_path / "static"))) is True
    assert links_libstdcxx_statically(str(tmp_path / "no-such-g++")) is None


def test_compiled_mode_checks_for_the_compiler_it_links_with(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    """compile = "compiled" builds a C++ library (AOTInductor) where no package is cached: doctor names the compiler
    it would use, passes over one that links libstdc++ statically (packages built so crashed on load), warns
    when that is the only one, and says how to get one when there is none."""
    job = write_job(tmp_path / "job.toml", input=str(sample_dir), model=str(model), output=str(tmp_path / "out"),
                    backend="torch", compile="compiled")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    checks, _ = parse(batchscore("doctor", "--job", str(job), env={"CXX": "no-such-g++", "PATH": str(empty)}).stdout)
    (status, detail, fix), = checks["compiler"]
    assert status == "WARN" and "no-such-g++ is not on PATH" in detail and "module load gcc" in fix
    if all(map(shutil.which, ("g++", "as", "ld", "nm"))):
        checks, _ = parse(batchscore("doctor", "--job", str(job), env={"CXX": "no-such-g++"}).stdout)
        (status, detail, _), = checks["compiler"]
        assert status == "OK" and shutil.which("g++") in detail and "CXX=no-such-g++ is not on PATH" in detail
        static = static_gxx(tmp_path / "static")
        checks, _ = parse(batchscore("doctor", "--job", str(job), env={"CXX": str(static)}).stdout)
        (status, detail, _), = checks["compiler"]
        assert status == "OK" and detail.startswith(shutil.which("g++")), detail
        assert f"not {static}: it links libstdc++ statically" in detail
        checks, _ = parse(batchscore("doctor", "--job", str(job), env={"CXX": "", "PATH": str(static.parent)}).stdout)
        (status, detail, fix), = checks["compiler"]
        assert status == "WARN" and detail.startswith(str(static)) and "links libstdc++ statically" in detail
        assert "CXX" in fix
    eager = write_job(tmp_path / "eager.toml", input=str(sample_dir), model=str(model), output=str(tmp_path / "o"))
    assert "compiler" not in parse(batchscore("doctor", "--job", str(eager)).stdout)[0]


def test_package_key_tells_cpus_with_other_instruction_sets_apart(tmp_path: Path) -> None:
    """The torch package's wrapper is compiled with -march=native: nodes whose CPUs differ in instruction-set
    flags get different cache keys, flag order does not matter, and this machine's own /proc/cpuinfo gives one."""
    def cpuinfo(name: str, flags: str) -> Path:
        path = tmp_path / name
        path.write_text(f"processor\t: 0\nmodel name\t: X\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
        return path

    avx2 = cpu_features(cpuinfo("a", "fpu sse2 avx avx2 fma"))
    assert avx2 == cpu_features(cpuinfo("b", "avx2 fma fpu avx sse2"))
    assert avx2 != cpu_features(cpuinfo("c", "fpu sse2 avx avx2 fma avx512f avx512bw"))
    here = cpu_features()
    assert here == cpu_features() and here
    if Path("/proc/cpuinfo").is_file() and "flags" in Path("/proc/cpuinfo").read_text():
        assert len(here) == 16 and int(here, 16) >= 0


def test_cache_entries_for_other_cpus_are_counted_apart_not_stale(tmp_path: Path) -> None:
    """A cache shared by unlike nodes holds packages for CPUs (and GPUs) this node lacks: doctor counts them
    as kept for those nodes, neither usable here nor stale."""
    cache = EngineCache(tmp_path / "cache")
    build = lambda path: path.write_bytes(b"artifact")  # noqa: E731
    cache.get({"kind": "torch-aoti", "cpu_flags": cpu_features()}, build, Path.read_bytes)
    cache.get({"kind": "torch-aoti", "cpu_flags": "0" * 16}, build, Path.read_bytes)
    (check,) = cache_checks(cache.root)
    assert (check.status, check.detail) == (
        "OK", f"{cache.root}: 1 entr(ies) usable here, 1 for other GPUs or CPUs (kept for the nodes that have them)")


def test_decode_processes_that_cannot_start_warn_with_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank would decode in threads then (decode/procs.py): a WARN that says so, not a FAIL."""
    from batchscore.decode import procs as decodeprocs
    from batchscore.doctor.software import decoder_checks
    from batchscore.preprocess import Preprocess

    monkeypatch.setattr(decodeprocs.sys, "executable", "/nonexistent/python")
    pillow, in_process = decoder_checks(False, Preprocess())
    assert pillow.status == "OK" and in_process.status == "WARN"
    assert "cannot decode a JPEG here: DecodeProcessError: cannot start decode processes" in in_process.detail
    assert "nonexistent" in in_process.detail and "worker_kind = \"thread\"" in in_process.fix
