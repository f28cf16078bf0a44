"""`batchscore bench` for real: the sample model on ONNX Runtime, one rank and two, out of memory included."""

import json
import resource
import subprocess
from pathlib import Path

import pytest

from batchscore.bench import batch_sizes, is_out_of_memory
from conftest import PYTHON, batchscore, mpi_env

QUICK = ("--warmup", "1", "--repeats", "3")


def test_batch_sizes_are_powers_of_two_up_to_the_maximum() -> None:
    assert batch_sizes(1) == [1]
    assert batch_sizes(8) == [1, 2, 4, 8]
    assert batch_sizes(12) == [1, 2, 4, 8, 12]


def test_out_of_memory_is_told_apart_from_other_failures() -> None:
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("[TensorRT] Error Code 2: OutOfMemory (no memory for the plan)"))
    assert not is_out_of_memory(ValueError("input shape mismatch"))


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory: pytest.TempPathFactory, model: Path) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("bench") / "one.json"
    res = batchscore("bench", "--model", str(model), "--max-batch", "4", "--precision", "fp32", "fp16",
                     *QUICK, "--json", str(out))
    assert res.returncode == 0, res.stderr
    return out, res


def test_one_rank_sweep_table_and_json(one_rank: tuple[Path, subprocess.CompletedProcess], model: Path) -> None:
    out, res = one_rank
    doc = json.loads(out.read_text())
    assert doc["kind"] == "bench" and doc["ranks"] == 1 and doc["backend"] == "onnxruntime"
    assert doc["input_shape"] == [3, 224, 224] and doc["model"] == str(model) and len(doc["model_sha256"]) == 64
    assert [(r["precision"], r["batch_size"]) for r in doc["results"]] == \
        [(p, b) for p in ("fp32", "fp16") for b in (1, 2, 4)]
    for r in doc["results"]:
        assert r["images_per_s"] > 0 and r["latency_p90_ms"] >= r["latency_ms"] > 0
        assert r["images_per_s"] == pytest.approx(r["batch_size"] / (r["latency_ms"] / 1e3), rel=1e-6)
        assert r["h2d_ms"] == 0 and r["d2h_ms"] == 0  # a CPU engine copies nothing
    lines = res.stdout.splitlines()
    assert any("img/s" in line and "latency ms" in line for line in lines)
    assert sum(1 for line in lines if line.split()[:1] in (["fp32"], ["fp16"])) == 6


def test_out_of_memory_ends_the_sweep_without_failing(tmp_path: Path, model: Path) -> None:
    """A real allocation failure: the process's address space is capped below a 4096-image batch (2.3 GiB)."""
    out = tmp_path / "oom.json"
    limit = 1_200_000_000
    res = subprocess.run([PYTHON, "-m", "batchscore", "bench", "--model", str(model), "--batch-sizes", "1", "4096",
                          "8192", *QUICK, "--json", str(out)], capture_output=True, text=True, timeout=120,
                         env=mpi_env(), preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    assert res.returncode == 0, res.stderr
    rows = json.loads(out.read_text())["results"]
    assert [r["batch_size"] for r in rows] == [1, 4096]  # 8192 never tried
    assert rows[0]["images_per_s"] > 0 and "MemoryError" in rows[1]["oom"]
    assert "out of memory" in res.stdout and "sweep stops there" in res.stderr


def test_two_ranks_report_aggregate_and_efficiency(tmp_path: Path, model: Path,
                                                   one_rank: tuple[Path, subprocess.CompletedProcess]) -> None:
    measured, given = tmp_path / "two.json", tmp_path / "two-given.json"
    res = batchscore("bench", "--model", str(model), "--batch-sizes", "2", "4", *QUICK, "--threads", "1",
                     "--json", str(measured), ranks=2)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(measured.read_text())
    assert doc["ranks"] == 2 and doc["baseline"] == "measured"
    for r in doc["results"]:
        assert len(r["per_rank_images_per_s"]) == 2 and min(r["per_rank_images_per_s"]) > 0
        assert r["images_per_s"] == pytest.approx(sum(r["per_rank_images_per_s"]))
        assert r["one_rank_images_per_s"] > 0
        assert r["scaling_efficiency"] == pytest.approx(r["images_per_s"] / (2 * r["one_rank_images_per_s"]))
    assert "efficiency" in res.stdout and "sum over 2 ranks" in res.stdout

    baseline = json.loads(one_rank[0].read_text())
    res = batchscore("bench", "--model", str(model), "--batch-sizes", "2", "4", *QUICK, "--threads", "1",
                     "--baseline", str(one_rank[0]), "--json", str(given), ranks=2)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(given.read_text())
    assert doc["baseline"] == "given"
    expected = {r["batch_size"]: r["images_per_s"] for r in baseline["results"] if r["precision"] == "fp32"}
    assert {r["batch_size"]: r["one_rank_images_per_s"] for r in doc["results"]} == {2: expected[2], 4: expected[4]}


def test_bad_baseline_and_model_exit_2(tmp_path: Path, model: Path) -> None:
    two = tmp_path / "not-bench.json"
    two.write_text('{"hello": 1}')
    res = batchscore("bench", "--model", str(model), "--baseline", str(two), "--json", str(tmp_path / "x.json"))
    assert res.returncode == 2 and "not a bench JSON" in res.stderr
    res = batchscore("bench", "--model", str(tmp_path / "missing.onnx"), "--json", str(tmp_path / "x.json"))
    assert res.returncode == 2 and "model not found" in res.stderr
    assert not (tmp_path / "x.json").exists()


def test_a_model_given_without_a_job_keeps_its_variants_in_the_engine_cache(tmp_path: Path, model: Path) -> None:
    """Not in the output folder of the bundled demo job, which lies inside the installed checkout."""
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(model.read_bytes())
    cache = tmp_path / "cache"
    res = batchscore("bench", "--model", str(mine), "--precision", "fp16", "--batch-sizes", "1", *QUICK,
                     "--json", str(tmp_path / "b.json"), cwd=tmp_path, env={"BATCHSCORE_CACHE": str(cache)})
    assert res.returncode == 0, res.stderr
    variants = list((cache / "variants").glob("mine-fp16-*.onnx"))
    assert len(variants) == 1 and str(variants[0]) in res.stderr
    assert json.loads((tmp_path / "b.json").read_text())["results"][0]["images_per_s"] > 0
