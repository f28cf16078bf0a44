"""Per-stage report in summary.json and the table, and `batchscore report` PNGs drawn from real runs."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchscore.plots import batch_series, load, needs_log, scaling_series
from batchscore.report import GPU_STAGES, STAGES, RankStats, format_table, summarize
from conftest import batchscore, write_job

QUICK = ("--warmup", "1", "--repeats", "3", "--threads", "1")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path, model: Path) -> dict[str, Path]:
    """Score summaries with 1 and 2 ranks, bench JSON with 1 rank (two precisions) and 2 ranks."""
    root = tmp_path_factory.mktemp("report")
    files = {}
    for n in (1, 2):
        job = write_job(root / f"job{n}.toml", input=str(sample_dir), model=str(model), output=str(root / f"out{n}"),
                        batch_size=8, workers=1, threads=1)
        res = batchscore("score", "--job", str(job), ranks=n)
        assert res.returncode == 0, res.stdout + res.stderr
        files[f"score{n}"] = root / f"out{n}" / "summary.json"
        files[f"score{n}_stdout"] = res.stdout
    res = batchscore("bench", "--model", str(model), "--max-batch", "4", "--precision", "fp32", "fp16", *QUICK,
                     "--json", str(root / "bench1.json"))
    assert res.returncode == 0, res.stderr
    res = batchscore("bench", "--model", str(model), "--max-batch", "4", *QUICK, "--json", str(root / "bench2.json"),
                     ranks=2)
    assert res.returncode == 0, res.stdout + res.stderr
    files.update(bench1=root / "bench1.json", bench2=root / "bench2.json", root=root)
    return files


def test_summary_and_table_have_every_stage_and_the_bound(runs: dict) -> None:
    for n in (1, 2):
        summary = json.loads(runs[f"score{n}"].read_text())
        for r in summary["per_rank"]:
            assert list(r["stages"]) == list(STAGES) and all(v >= 0 for v in r["stages"].values())
            assert r["stages"]["decode"] > 0 and r["stages"]["infer"] > 0 and r["stages"]["write"] > 0
            assert r["stages"]["h2d"] == 0 and r["stages"]["d2h"] == 0  # ONNX Runtime on the CPU copies nothing
            assert r["bound"] in STAGES and r["bound"] != "wait"
            assert 0 < r["first_batch_seconds"] < r["seconds"] and r["steady_images_per_s"] > 0
        assert summary["first_batch_seconds"] == max(r["first_batch_seconds"] for r in summary["per_rank"])
        steady = sum(r["steady_images_per_s"] for r in summary["per_rank"])
        assert summary["steady_images_per_s"] == pytest.approx(steady, abs=0.05)
        assert f"{summary['steady_images_per_s']:.1f} img/s after it" in runs[f"score{n}_stdout"]
        header = next(line for line in runs[f"score{n}_stdout"].splitlines() if line.lstrip().startswith("rank"))
        cpu_stages = [s for s in STAGES if s not in GPU_STAGES]  # a CPU run has no GPU decoder and copies nothing
        assert header.split()[-len(cpu_stages) - 1:] == [*cpu_stages, "bound"]
        assert f"decode: CPU, {summary['per_rank'][0]['workers']} worker" in runs[f"score{n}_stdout"]


def test_bound_is_the_busiest_stage_with_worker_stages_shared_out() -> None:
    stats = RankStats(0, images=10, workers=4, seconds=5.0)
    stats.stages.update(read=2.0, decode=16.0, wait=2.0, infer=1.0, write=0.1)
    assert stats.bound == "decode"  # 16 s over 4 workers: busy 4 of the 5 s
    assert stats.as_dict()["busy_fraction"]["decode"] == 0.8
    stats.stages.update(decode=3.0)
    assert stats.bound == "infer"  # 3 s over 4 workers is less than the loop's 1 s of inference
    stats.stages.update(gpu=2.5)
    assert stats.bound == "gpu"  # the GPU decoder thread runs alone: its seconds count whole
    stats.stages.update(wait=9.0)
    assert stats.bound == "gpu"  # waiting is a symptom, never the bound
    stats.gpu_threads = 4
    assert stats.bound == "infer"  # 2.5 s over 4 GPU decoder threads: each busy less than inference
    assert RankStats(1).bound == ""  # no work, no bound


def test_the_table_of_a_cpu_run_speaks_plainly() -> None:
    info = {"version": "0", "backend": "onnxruntime", "precision": "fp32", "batch_size": 32, "output": "scores.h5",
            "decode": "cpu", "decode_reason": "auto: backend 'onnxruntime' is fed host arrays"}

    def rank(n: int, images: int, first: int) -> RankStats:
        stats = RankStats(n, images=images, workers=2, seconds=1.0, first_batch_seconds=0.4, first_batch_images=first)
        stats.stages.update(read=0.1, decode=1.2, infer=0.3, write=0.01)
        return stats

    table = format_table(summarize([rank(0, 64, 32), rank(1, 64, 32)], wall_seconds=1.5, total_keys=128,
                                   failed_total=0, resumed=0, info=info))
    header = next(line for line in table.splitlines() if line.lstrip().startswith("rank"))
    assert not set(header.split()) & set(GPU_STAGES) and "GPU" not in table and "auto:" not in table
    assert "\ndecode: CPU, 2 workers per rank\n" in table and "s, 106.7 img/s after it" in table
    small = format_table(summarize([rank(0, 20, 20)], wall_seconds=1.5, total_keys=20, failed_total=0, resumed=0,
                                   info=info))  # one batch: no rate after it to give
    assert "first batch scored after 0.40 s\n" in small and "after it" not in small
    assert "\ndecode: CPU, 2 workers\n" in small


def test_steady_rate_leaves_the_first_batch_out() -> None:
    stats = RankStats(0, images=1000, seconds=3.0, first_batch_seconds=1.0, first_batch_images=200)
    assert stats.images_per_s == pytest.approx(333.33, abs=0.01)  # end to end: the fill-up included
    assert stats.steady_images_per_s == 400.0  # 800 images in the 2 s after the first batch
    one_batch = RankStats(0, images=200, seconds=1.0, first_batch_seconds=1.0, first_batch_images=200)
    assert one_batch.steady_images_per_s == 0  # nothing after the first batch


def test_series_come_from_the_files(runs: dict) -> None:
    benches, summaries = load([runs["bench1"], runs["bench2"], runs["score1"], runs["score2"]])
    assert len(benches) == 2 and len(summaries) == 2
    by_batch, oom = batch_series(benches)
    one = json.loads(runs["bench1"].read_text())
    assert by_batch["fp16 (onnxruntime, cpu, 1 rank)"] == {r["batch_size"]: r["images_per_s"]
                                                           for r in one["results"] if r["precision"] == "fp16"}
    assert not oom
    by_ranks = scaling_series(benches, summaries)
    score = next(v for k, v in by_ranks.items() if k.startswith("score:"))
    assert score == {n: json.loads(runs[f"score{n}"].read_text())["aggregate_images_per_s"] for n in (1, 2)}
    bench = next(v for k, v in by_ranks.items() if k.startswith("bench:"))
    two = json.loads(runs["bench2"].read_text())
    best = max(two["results"], key=lambda r: r["images_per_s"])
    assert bench == {1: best["one_rank_images_per_s"], 2: best["images_per_s"]}


def test_report_draws_both_pngs(runs: dict, tmp_path: Path) -> None:
    files = [str(runs[k]) for k in ("bench1", "bench2", "score1", "score2")]
    res = batchscore("report", *files, "--out", str(tmp_path / "plots"))
    assert res.returncode == 0, res.stderr
    for name in ("throughput_vs_batch.png", "scaling.png"):
        path = tmp_path / "plots" / name
        assert str(path) in res.stdout
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width > 400 and img.height > 300
            colours = np.asarray(img.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(colours, axis=0)) > 50  # lines, labels and legend drawn, not a blank canvas
    assert not list((tmp_path / "plots").glob(".*tmp"))  # published by rename, no leftovers


def test_report_only_draws_what_the_files_hold(runs: dict, tmp_path: Path) -> None:
    res = batchscore("report", str(runs["bench1"]), "--out", str(tmp_path / "p"))
    assert res.returncode == 0, res.stderr
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["throughput_vs_batch.png"]  # one rank: no scaling data


def test_report_rejects_files_it_cannot_use(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text('{"a": 1}')
    (tmp_path / "broken.json").write_text("{")
    for name, message in (("other.json", "neither a bench JSON"), ("broken.json", "cannot read as JSON"),
                          ("missing.json", "cannot read as JSON")):
        res = batchscore("report", str(tmp_path / name), "--out", str(tmp_path / "p"))
        assert res.returncode == 2 and message in res.stderr and name in res.stderr


def test_report_on_one_summary_draws_no_ideal_line(runs: dict, tmp_path: Path) -> None:
    res = batchscore("report", str(runs["score1"]), "--out", str(tmp_path / "one"))
    assert res.returncode == 0, res.stderr
    summary = json.loads(runs["score1"].read_text())
    assert res.stdout.strip().endswith(f"1 rank(s) {summary['aggregate_images_per_s']:.1f} img/s")  # no efficiency
    assert (tmp_path / "one" / "scaling.png").stat().st_size > 0


def test_series_of_very_different_magnitude_get_a_log_axis() -> None:
    assert needs_log({"score: cpu": {1: 150.0, 2: 160.0}, "bench: gpu": {1: 9000.0, 2: 18000.0}})
    assert not needs_log({"score: cpu": {1: 150.0, 2: 290.0}, "bench: cpu": {1: 600.0, 2: 1100.0}})
