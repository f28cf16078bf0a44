"""The sample image generator (data/make_sample.py) and the committed sample model (data/model.onnx)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from batchscore.preprocess import Preprocess, preprocess
from conftest import load_make_sample

DATA = Path(__file__).resolve().parents[1] / "data"
MODEL = DATA / "model.onnx"
HELDOUT_START = 5000  # disjoint from training (100000..) and the demo archive (0..599)


make_sample = load_make_sample()


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _labels(root: Path) -> list[tuple[str, str]]:
    with (root / "labels.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["key", "label"]
    return [tuple(r) for r in rows[1:]]


@pytest.fixture(scope="module")
def moderate(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """60 fresh images that the model never trained on."""
    root = tmp_path_factory.mktemp("moderate")
    return root, make_sample.generate(root, 60, seed=0, start=HELDOUT_START)


def test_deterministic_and_prefix_stable(tmp_path: Path) -> None:
    a = make_sample.generate(tmp_path / "a", 12, seed=0)
    b = make_sample.generate(tmp_path / "b", 12, seed=0)
    c = make_sample.generate(tmp_path / "c", 15, seed=0)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b and fa == fb  # byte-identical, labels.csv included
    assert len(a) == 12 and len(c) == 15
    assert {k: v for k, v in c.items() if k in a} == a
    assert all(fc[k] == fa[k] for k in a)  # the first 12 of 15 are the same files
    # Regenerating in place is idempotent.
    make_sample.generate(tmp_path / "a", 12, seed=0)
    assert _files(tmp_path / "a") == fa
    # Another seed gives other images.
    d = make_sample.generate(tmp_path / "d", 12, seed=1)
    assert _files(tmp_path / "d")[next(iter(d))] != fa.get(next(iter(d)))


def test_start_adds_disjoint_images_and_keeps_labels(tmp_path: Path) -> None:
    first = make_sample.generate(tmp_path, 10, seed=0)
    more = make_sample.generate(tmp_path, 5, seed=0, start=10)
    assert not set(first) & set(more)
    rows = _labels(tmp_path)
    assert dict(rows) == {**first, **more}
    assert [k for k, _ in rows] == sorted(k for k, _ in rows)
    assert {k.rsplit("_", 1)[1].split(".")[0] for k in more} == {f"{i:05d}" for i in range(10, 15)}


def test_classes_sizes_formats(moderate) -> None:
    root, labels = moderate
    classes = set(labels.values())
    assert len(classes) >= 10
    assert classes <= set(make_sample.CLASSES)
    exts, modes = set(), set()
    for key in labels:
        data = (root / key).read_bytes()
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        assert 300 <= max(w, h) <= 640, key
        assert 0.59 <= min(w, h) / max(w, h) <= 1.0, key
        assert img.format == {"jpg": "JPEG", "png": "PNG"}[key.rsplit(".", 1)[1]], key
        exts.add(img.format)
        modes.add(img.mode)
    assert exts == {"JPEG", "PNG"}
    assert modes == {"RGB", "L"}
    orient = {(Image.open(root / k).width > Image.open(root / k).height) for k in labels}
    assert orient == {True, False}  # landscape and portrait


def test_labels_csv_matches_files(moderate) -> None:
    root, labels = moderate
    rows = _labels(root)
    assert [k for k, _ in rows] == sorted(labels)
    assert dict(rows) == labels
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != "labels.csv"}
    assert on_disk == set(labels)
    for key, label in rows:
        cls, name = key.split("/")
        assert cls == label and name.startswith(f"{label}_")


def test_classes_txt_matches_generator_and_model() -> None:
    listed = (DATA / "classes.txt").read_text().split()
    assert listed == list(make_sample.CLASSES)
    meta = {p.key: p.value for p in onnx.load(str(MODEL)).metadata_props}
    assert meta["classes"].split(",") == listed
    spec = Preprocess()
    assert int(meta["resize"]) == spec.resize and int(meta["crop"]) == spec.crop
    assert np.allclose([float(v) for v in meta["mean"].split(",")], spec.mean)
    assert np.allclose([float(v) for v in meta["std"].split(",")], spec.std)


def test_model_file_and_dynamic_batch() -> None:
    assert MODEL.stat().st_size < 5 * 1024 * 1024
    m = onnx.load(str(MODEL), load_external_data=False)
    onnx.checker.check_model(m)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in m.graph.initializer)
    opset = {o.domain: o.version for o in m.opset_import}
    assert opset.get("", opset.get("ai.onnx", 0)) >= 17

    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == "input" and inp.type == "tensor(float)"
    assert inp.shape[1:] == [3, 224, 224] and not isinstance(inp.shape[0], int)
    assert out.name == "logits"
    x = np.random.default_rng(0).normal(size=(3, 3, 224, 224)).astype(np.float32)
    (y3,) = sess.run(["logits"], {"input": x})
    (y1,) = sess.run(["logits"], {"input": x[1:2]})
    assert y3.shape == (3, 10) and y1.shape == (1, 10) and y3.dtype == np.float32
    np.testing.assert_allclose(y1[0], y3[1], rtol=1e-4, atol=1e-4)


def test_model_accuracy_on_fresh_images(moderate) -> None:
    root, labels = moderate
    keys = sorted(labels)
    spec = Preprocess()
    x = np.stack([preprocess((root / k).read_bytes(), spec) for k in keys])
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(["logits"], {"input": x[i:i + 20]})[0] for i in range(0, len(x), 20)])
    pred = [make_sample.CLASSES[i] for i in logits.argmax(1)]
    top1 = np.mean([p == labels[k] for p, k in zip(pred, keys)])
    assert top1 >= 0.85, f"top-1 {top1:.2%} on {len(keys)} fresh images"
