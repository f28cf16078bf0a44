"""Job files: what a user gets for typos, wrong types and overrides."""

from pathlib import Path

import pytest

from batchscore.config import ConfigError, load_job
from conftest import write_job


def job_file(tmp_path: Path, **values: object) -> Path:
    return write_job(tmp_path / "job.toml", **{"input": "imgs", "model": "m.onnx", "output": "out", **values})


def test_relative_paths_resolve_against_the_job_file(tmp_path: Path) -> None:
    job = load_job(job_file(tmp_path, batch_size=16, top_k=3, preprocess={"resize": 160, "crop": 128}))
    assert job.input == ((tmp_path / "imgs").resolve(),)
    assert job.model == (tmp_path / "m.onnx").resolve()
    assert (job.batch_size, job.top_k, job.preprocess.resize, job.preprocess.crop) == (16, 3, 160, 128)
    assert job.preprocess.shape == (3, 128, 128)


@pytest.mark.parametrize("values, message", [
    ({"batchsize": 8}, "batchsize: unknown key"),
    ({"batch_size": "8"}, "batch_size: expected integer"),
    ({"batch_size": True}, "batch_size: expected integer"),
    ({"batch_size": -1}, "batch_size must be >= 1, or 0 to size it for the device"),
    ({"backend": "cuda"}, "backend must be one of"),
    ({"worker_kind": "processes"}, "worker_kind must be one of auto, process, thread; got 'processes'"),
    ({"save_outputs": "logits"}, "save_outputs: expected array or boolean"),
    ({"preprocess": {"crop": 300}}, "must not exceed"),
    ({"preprocess": {"mean": [0.5, 0.5]}}, "preprocess.mean: expected an array of 3 numbers"),
    ({"preprocess": {"colour": "RGB"}}, "preprocess.colour: unknown key"),
    ({"preprocess": {"channel_order": "RGBA"}}, "channel_order must be"),
])
def test_bad_values_name_the_key(tmp_path: Path, values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_job(job_file(tmp_path, **values))


def test_missing_required_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing required key.*output"):
        load_job(write_job(tmp_path / "j.toml", input="a", model="b"))
    bad = tmp_path / "bad.toml"
    bad.write_text("input = [unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_job(bad)
    with pytest.raises(ConfigError, match="cannot read job file"):
        load_job(tmp_path / "absent.toml")


def test_overrides_replace_and_revalidate(tmp_path: Path) -> None:
    job = load_job(job_file(tmp_path))
    new = job.with_overrides(batch_size=4, top_k=None, save_outputs=("*",))
    assert (new.batch_size, new.top_k, new.save_outputs) == (4, job.top_k, ("*",))
    with pytest.raises(ConfigError, match="top_k must be >= 1"):
        job.with_overrides(top_k=0)


def test_unset_batch_and_compile_settle_for_the_device(tmp_path: Path) -> None:
    job = load_job(job_file(tmp_path))
    assert (job.batch_size, job.compile) == (0, "auto")
    assert (job.settled(gpu=True).batch_size, job.settled(gpu=True).compile) == (256, "cudagraph")
    assert (job.settled(gpu=False).batch_size, job.settled(gpu=False).compile) == (32, "eager")
    chosen = load_job(job_file(tmp_path, batch_size=8, compile="eager")).settled(gpu=True)
    assert (chosen.batch_size, chosen.compile) == (8, "eager")
