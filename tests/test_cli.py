"""The command line for real: exit codes, messages, a bad-input corpus, the HDF5 layout read back."""

import argparse
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from batchscore.writer import PARTS
from conftest import CLASSES, PYTHON, ROOT, batchscore, mpi_env, write_job


def score_job(tmp_path: Path, inputs: Path | list, model: Path, **extra: object) -> Path:
    values = {"batch_size": 8, "top_k": 3, "workers": 1, **extra}
    return write_job(tmp_path / "job.toml", input=[str(p) for p in inputs] if isinstance(inputs, list) else str(inputs),
                     model=str(model), output=str(tmp_path / "out"), **values)


def test_help_needs_no_mpi_and_names_the_commands() -> None:
    res = batchscore("--help")
    assert res.returncode == 0 and "score" in res.stdout and "Exit status" in res.stdout
    res = batchscore("score", "--help")
    assert res.returncode == 0 and "--save-outputs" in res.stdout and "--job FILE" in res.stdout
    assert "--decode" in res.stdout and "--gpu-decoder" in res.stdout
    assert "--gpu-decode-threads" not in res.stdout  # removed: it fails with what to do instead
    for command in ("accuracy", "build"):  # they decode on the CPU (accuracy) or not at all (build)
        res = batchscore(command, "--help")
        assert res.returncode == 0 and "--job FILE" in res.stdout and "--decode" not in res.stdout, command


def test_scores_h5_layout_read_back(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    job = score_job(tmp_path, sample_dir, model, classes=str(CLASSES), save_outputs=["logits"])
    res = batchscore("score", "--job", str(job))
    assert res.returncode == 0, res.stderr
    keys = sorted(p.relative_to(sample_dir).as_posix() for p in sample_dir.rglob("*") if p.suffix in (".jpg", ".png"))
    with h5py.File(tmp_path / "out" / "scores.h5", "r") as f:
        assert f["key"].asstr()[:].tolist() == keys
        assert f["topk_index"].dtype == np.int32 and f["topk_index"].shape == (len(keys), 3)
        assert f["topk_score"].dtype == np.float32 and f["status"].dtype == np.int8
        scores = f["topk_score"][:]
        assert (np.diff(scores, axis=1) <= 0).all() and (scores.sum(1) <= 1 + 1e-5).all()  # sorted probabilities
        logits = f["outputs/logits"][:]
        prob = np.exp(logits - logits.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        np.testing.assert_allclose(np.sort(prob, 1)[:, ::-1][:, :3], scores, rtol=1e-5, atol=1e-6)
        assert (f["status"][:] == 0).all() and set(f["error"].asstr()[:]) == {""}
        attrs = dict(f.attrs)
        assert len(attrs["model_sha256"]) == 64 and attrs["backend"] == "onnxruntime"
        assert attrs["precision"] == "fp32" and attrs["batch_size"] == 8 and attrs["ranks"] == 1
        assert "softmax" in attrs["topk_score"] and json.loads(attrs["preprocess"])["crop"] == 224
        assert list(attrs["classes"]) == CLASSES.read_text().split()
        classes = list(attrs["classes"])
        top1 = [classes[i] for i in f["topk_index"][:, 0]]
    truth = [k.split("/")[0] for k in keys]
    assert np.mean([a == b for a, b in zip(top1, truth)]) >= 0.85  # the sample model really classifies
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"] == {"total": len(keys), "ok": len(keys), "failed": 0,
                                 "scored_this_run": len(keys), "resumed_from_earlier_runs": 0}
    assert summary["per_rank"][0]["images"] == len(keys) and summary["aggregate_images_per_s"] > 0
    assert "aggregate:" in res.stdout and "img/s" in res.stdout
    assert not (tmp_path / "out" / ".parts").exists()  # no leftovers once published


def bad_corpus(root: Path, sample_dir: Path) -> dict[str, str]:
    """Real bad files next to good ones; returns key -> expected reason fragment."""
    root.mkdir()
    good = sorted(sample_dir.glob("*/*.jpg"))[:5]
    for p in good:
        shutil.copy(p, root / p.name)
    jpeg = good[0].read_bytes()
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (root / "zero.jpg").write_bytes(b"")
    (root / "text.png").write_text("hello, I am not a PNG")
    buf = io.BytesIO()
    Image.new("L", (4000, 3000)).save(buf, "PNG")
    (root / "bomb.png").write_bytes(buf.getvalue())
    os.symlink(root / "gone.jpg", root / "unreadable.jpg")  # a dangling link: listed, cannot be read
    return {"truncated.jpg": "corrupt", "zero.jpg": "empty file", "text.png": "not an image",
            "bomb.png": "too large", "unreadable.jpg": "read failed"}


def test_bad_inputs_become_error_rows_and_the_run_succeeds(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    expected = bad_corpus(tmp_path / "bad", sample_dir)
    job = score_job(tmp_path, tmp_path / "bad", model, preprocess={"max_pixels": 5_000_000}, batch_size=4)
    res = batchscore("score", "--job", str(job))
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "out" / "scores.h5", "r") as f:
        rows = dict(zip(f["key"].asstr()[:], zip(f["status"][:], f["error"].asstr()[:], f["topk_index"][:, 0])))
    assert len(rows) == 5 + len(expected)
    for key, reason in expected.items():
        status, error, top1 = rows[key]
        assert status == 1 and reason in error and top1 == -1, (key, error)
    assert sum(1 for s, _, t in rows.values() if s == 0 and t >= 0) == 5
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["images"]["failed"] == len(expected) and summary["images"]["ok"] == 5
    assert f"{len(expected)} failed" in res.stdout


def test_start_up_errors_exit_2_before_any_work(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    job = score_job(tmp_path, sample_dir, model)
    cases = [
        (["--model", str(tmp_path / "missing.onnx")], "model not found"),
        (["--input", str(tmp_path / "nowhere")], "input not found"),
        (["--top-k", "11"], "only 10 classes"),
        (["--save-outputs", "probs"], "model's outputs are ['logits']"),
        (["--backend", "torch", "--precision", "int8"], "torch backend cannot run INT8"),
    ]
    (tmp_path / "afile").write_text("")
    cases.append((["--output", str(tmp_path / "afile" / "out")], "not writable"))
    for args, message in cases:
        res = batchscore("score", "--job", str(job), *args)
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)
        assert not (tmp_path / "out" / "scores.h5").exists()
    res = batchscore("score", "--job", str(score_job(tmp_path, sample_dir, model, classes="nope.txt")))
    assert res.returncode == 2 and "classes file not found" in res.stderr
    bad_job = tmp_path / "bad.toml"
    bad_job.write_text('input = "x"\nmodel = "y"\noutput = "z"\nbatch_sise = 3\n')
    res = batchscore("score", "--job", str(bad_job))
    assert res.returncode == 2 and "batch_sise: unknown key" in res.stderr
    res = batchscore("score", "--batch-size", "abc")
    assert res.returncode == 2 and "invalid int value" in res.stderr


def test_existing_result_needs_overwrite(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    job = score_job(tmp_path, sample_dir, model)
    assert batchscore("score", "--job", str(job)).returncode == 0
    first = (tmp_path / "out" / "scores.h5").read_bytes()
    res = batchscore("score", "--job", str(job))
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert (tmp_path / "out" / "scores.h5").read_bytes() == first
    res = batchscore("score", "--job", str(job), "--overwrite", "--top-k", "2")
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "out" / "scores.h5", "r") as f:
        assert f["topk_index"].shape[1] == 2


@pytest.mark.parametrize("fmt", ["tar", "h5", "list"])
def test_other_sources_score_like_the_folder(tmp_path: Path, sample_dir: Path, model: Path, fmt: str) -> None:
    import tarfile

    files = sorted(p for p in sample_dir.rglob("*") if p.suffix in (".jpg", ".png"))[:12]
    if fmt == "tar":
        src = tmp_path / "shard.tar"
        with tarfile.open(src, "w") as tar:
            for p in files:
                tar.add(p, arcname=p.relative_to(sample_dir).as_posix())
        prefix = "shard.tar:"
    elif fmt == "h5":
        src = tmp_path / "images.h5"
        with h5py.File(src, "w") as f:
            d = f.create_dataset("images", (len(files),), dtype=h5py.vlen_dtype(np.uint8))
            for i, p in enumerate(files):
                d[i] = np.frombuffer(p.read_bytes(), np.uint8)
            f["keys"] = [p.relative_to(sample_dir).as_posix() for p in files]
        prefix = "images.h5:"
    else:
        src = tmp_path / "list.txt"
        src.write_text("\n".join(str(p) for p in files))
        prefix = str(sample_dir) + "/"
    res = batchscore("score", "--job", str(score_job(tmp_path, src, model)))
    assert res.returncode == 0, res.stderr
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    for p in files:
        shutil.copy(p, ref_dir / p.relative_to(sample_dir).as_posix().replace("/", "__"))
    assert batchscore("score", "--job", str(score_job(ref_dir, ref_dir, model))).returncode == 0
    with h5py.File(tmp_path / "out" / "scores.h5") as f, h5py.File(ref_dir / "out" / "scores.h5") as g:
        keys = [k.removeprefix(prefix).replace("/", "__") for k in f["key"].asstr()[:]]
        assert keys == list(g["key"].asstr()[:])
        np.testing.assert_array_equal(f["topk_index"][:], g["topk_index"][:])
        np.testing.assert_allclose(f["topk_score"][:], g["topk_score"][:], atol=1e-6)


@pytest.fixture
def checkout(tmp_path: Path, sample_dir: Path, model: Path) -> Path:
    """A folder laid out like the repository root: the real jobs/demo.toml, the small sample as data/sample."""
    root = tmp_path / "checkout"
    (root / "jobs").mkdir(parents=True)
    shutil.copy(ROOT / "jobs" / "demo.toml", root / "jobs")
    (root / "data").mkdir()
    os.symlink(sample_dir, root / "data" / "sample")
    os.symlink(model, root / "data" / "model.onnx")
    os.symlink(CLASSES, root / "data" / "classes.txt")
    return root


def test_no_command_scores_the_sample_and_replaces_its_own_result(checkout: Path) -> None:
    out = checkout / "results" / "demo"
    for args in ([], [], ["--batch-size", "16"], ["--overwrite", "--top-k", "2"]):  # reruns need no --overwrite
        res = batchscore(*args, cwd=checkout)
        assert res.returncode == 0, (args, res.stderr)
        assert f"output: {out / 'scores.h5'}" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["top_k"] == 2 and summary["images"]["total"] == summary["images"]["ok"] > 0
    other = checkout / "other"
    assert batchscore("--output", str(other), cwd=checkout).returncode == 0
    res = batchscore("--output", str(other), cwd=checkout)  # another output folder is not the sample's own
    assert res.returncode == 2 and "pass --overwrite" in res.stderr
    res = batchscore(cwd=checkout / "jobs")  # no jobs/demo.toml here
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "pass --job FILE" in res.stderr
    res = batchscore("scroe", cwd=checkout)  # a mistyped command is not taken for score options
    assert res.returncode == 2 and "invalid choice: 'scroe'" in res.stderr


def missing(backend: str) -> bool:
    from batchscore.engines import BACKEND_PACKAGES

    return not all(importlib.util.find_spec(p) for p in BACKEND_PACKAGES[backend])


def test_errors_before_work_are_one_line_and_write_nothing(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    job = score_job(tmp_path, sample_dir, model)
    out = tmp_path / "out"
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("not an image")
    (tmp_path / "afile").write_text("")
    cases = [(["score", "--input", str(tmp_path / "empty")],
              f"no images in {tmp_path / 'empty'}: folders are searched, with their sub-folders and .tar files, "
              "for .bmp .gif .jpeg .jpg .png .tif .tiff .webp files"),
             (["score", "--output", str(tmp_path / "afile")], f"output {tmp_path / 'afile'} is a file, not a folder")]
    for backend, packages in (("tensorrt", "pip install tensorrt pycuda"), ("torch", "pip install torch onnx2torch")):
        if missing(backend):  # the message names exactly the packages missing here; with all of them nothing to test
            cases += [([command, "--backend", backend], f"backend '{backend}' needs") for command in ("score", "build")]
            cases.append((["score", "--backend", backend], packages))
    for args, message in cases:
        res = batchscore(args[0], "--job", str(job), *args[1:])
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
        assert not out.exists(), args  # no OUTPUT/.parts, nothing
    bad_job = tmp_path / "bad.toml"
    bad_job.write_text('input = "x"\nmodel = "y"\noutput = "z"\nbatch_sise = 3\n[preprocess]\ncrop = 1\n')
    res = batchscore("score", "--job", str(bad_job))
    assert res.returncode == 2 and "batch_sise: unknown key; did you mean batch_size?" in res.stderr
    bad_job.write_text('input = "x"\nmodel = "y"\noutput = "z"\n[preprocess]\ncrpo = 1\n')
    res = batchscore("score", "--job", str(bad_job))
    assert res.returncode == 2 and "preprocess.crpo: unknown key; did you mean crop?" in res.stderr


def test_an_incremental_run_with_nothing_new_succeeds_and_says_so(tmp_path: Path, sample_dir: Path,
                                                                   model: Path) -> None:
    job = score_job(tmp_path, sample_dir, model)
    assert batchscore("score", "--job", str(job), "--incremental").returncode == 0
    res = batchscore("score", "--job", str(job), "--incremental")
    assert res.returncode == 0, res.stderr
    assert "nothing new or changed since the last run" in res.stdout


def test_an_unfinished_run_of_another_job_names_what_differs(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    job = score_job(tmp_path, sample_dir, model, batch_size=1, commit_every=1, threads=1)
    proc = subprocess.Popen([PYTHON, "-m", "batchscore", "score", "--job", str(job)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=mpi_env())
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out" / PARTS).glob("*.h5")):  # a real unfinished run: stopped after a commit
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)  # the stop must land while most of the 48 images are still to do
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 75
    res = batchscore("score", "--job", str(job), "--top-k", "2", "--save-outputs", "logits")
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "holds an unfinished run of a different job (top_k: 3 -> 2; save_outputs: [] -> ['logits'])" in res.stderr


def test_score_help_explains_every_flag() -> None:
    from batchscore.cli import build_parser

    res = batchscore("score", "--help")
    assert res.returncode == 0
    shown = " ".join(res.stdout.split())
    parser = build_parser()
    score = parser._subparsers._group_actions[0].choices["score"]
    flags = [a for a in score._actions if a.option_strings and a.dest != "help" and a.help != argparse.SUPPRESS]
    assert len(flags) >= 18
    for action in flags:
        assert action.help and " ".join(action.help.split()) in shown, action.option_strings


def test_unset_batch_size_settles_for_the_cpu(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    """batch_size = 0 (the default) runs the CPU backend at batches of 32, eager, and records what it ran."""
    res = batchscore("score", "--job", str(score_job(tmp_path, sample_dir, model, batch_size=0)))
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "out" / "scores.h5", "r") as f:
        assert f.attrs["batch_size"] == 32
        assert f.attrs["compile"] == "eager"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["batch_size"], summary["compile"]) == (32, "eager")
