"""The CPU decode path on real JPEGs of mixed sizes and encodings, against the textbook reference preprocessing
(Pillow decodes the whole image, resizes the whole shorter side, crops, normalises in float arithmetic)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from batchscore.preprocess import Preprocess, decode, preprocess
from conftest import ROOT, load_make_sample

SPEC = Preprocess()
#: one 8-bit level in normalised units for the channel with the smallest std: the most the crop-only resample
#: may move a value (Pillow's fixed-point weights round a few values the other way)
ONE_LEVEL = 1 / 255 / min(SPEC.std) + 1e-6


def reference(data: bytes, spec: Preprocess = SPEC) -> np.ndarray:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    scale = spec.resize / min(w, h)
    new_w, new_h = max(spec.resize, round(w * scale)), max(spec.resize, round(h * scale))
    left, top = (new_w - spec.crop) // 2, (new_h - spec.crop) // 2
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR).crop((left, top, left + spec.crop, top + spec.crop))
    arr = (np.asarray(img, np.float32) / 255 - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return arr.transpose(2, 0, 1)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """48 JPEGs cut from the sample generator's pictures by the benchmark archive's recipe: shorter side
    300-640, 4:2:0 / 4:2:2 / 4:4:4, some progressive and grayscale, quality 70-95."""
    spec = importlib.util.spec_from_file_location("photos", ROOT / "benchmarks" / "photos.py")
    photos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(photos)
    root = tmp_path_factory.mktemp("pictures")
    load_make_sample().generate(root, 16, seed=3)
    sources = [Image.open(p).convert("RGB") for p in sorted(root.rglob("*")) if p.suffix in (".jpg", ".png")]
    recipes = [photos.recipe(i, 0, len(sources), None) for i in range(48)]
    recipes[0].update(progressive=True, gray=False, subsampling=2)
    recipes[1].update(gray=True)
    recipes[2].update(progressive=False, gray=False, subsampling=0)
    return [photos.encode(sources[r["photo"]], r) for r in recipes]


def test_agrees_with_the_reference_to_one_level(jpegs: list[bytes]) -> None:
    diffs = np.stack([np.abs(preprocess(data, SPEC) - reference(data)) for data in jpegs])
    assert diffs.max() <= ONE_LEVEL
    assert diffs.mean() < 1e-3  # a few values in a thousand moved by one level, most not at all
    assert (diffs > 0).mean() < 0.05


def test_same_top1_as_the_reference(jpegs: list[bytes]) -> None:
    session = ort.InferenceSession(str(ROOT / "data" / "model.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    ours = session.run(None, {name: np.stack([preprocess(d, SPEC) for d in jpegs])})[0]
    ref = session.run(None, {name: np.stack([reference(d) for d in jpegs])})[0]
    assert (ours.argmax(1) == ref.argmax(1)).all()


def test_writes_into_the_given_row(jpegs: list[bytes]) -> None:
    batch = np.full((3, *SPEC.shape), np.nan, np.float32)
    row = preprocess(jpegs[0], SPEC, out=batch[1])
    assert row is batch[1] or np.shares_memory(row, batch[1])
    np.testing.assert_array_equal(batch[1], preprocess(jpegs[0], SPEC))
    assert np.isnan(batch[0]).all() and np.isnan(batch[2]).all()


def test_bgr_lookup_is_the_rgb_result_reversed(jpegs: list[bytes]) -> None:
    bgr = Preprocess(channel_order="BGR", mean=SPEC.mean[::-1], std=SPEC.std[::-1])
    for data in jpegs[:4]:
        np.testing.assert_array_equal(preprocess(data, bgr), preprocess(data, SPEC)[::-1])


def test_draft_decodes_large_jpegs_smaller_and_stays_close(jpegs: list[bytes]) -> None:
    big = Image.open(io.BytesIO(jpegs[2])).resize((1200, 900), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    assert decode(data, draft=(SPEC.resize, SPEC.resize)).size == (600, 450)  # 1/2: both sides stay >= 256
    assert decode(data).size == (1200, 900)
    diff = np.abs(preprocess(data, SPEC, draft=True) - reference(data))
    assert 0 < diff.mean() < 0.05  # pixels differ (scaled IDCT), but only slightly
