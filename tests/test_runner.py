"""The per-rank loop's pairing of batches and outputs, with the real ONNX Runtime engine and real files."""

import threading
from pathlib import Path

import numpy as np
import pytest

from batchscore.engines import EngineOptions, create_engine
from batchscore.decode.cpu import CpuDecoder, decode_executor
from batchscore.pipeline import batches
from batchscore.preprocess import Preprocess
from batchscore.runner import ARGMAX_TOP_K, _beside, scored, topk
from batchscore.sources import Item, list_items


def test_scored_keeps_order_around_batches_without_a_good_image(tmp_path: Path, sample_dir: Path,
                                                                model: Path) -> None:
    good = list_items([sample_dir])[:7]
    bad = []
    for i in range(5):
        (tmp_path / f"bad{i}.jpg").write_bytes(b"not a jpeg")
        bad.append(Item(f"bad{i}", "file", str(tmp_path / f"bad{i}.jpg")))
    # batch size 2: [bad bad] [g g] [bad g] [g g] [g g] [bad bad] -> all-bad batches first, mid and last
    items = bad[:2] + good[:2] + [bad[2]] + good[2:7] + bad[3:]
    engine = create_engine("onnxruntime", model, EngineOptions(batch_size=2, threads=1)).activate()
    empty_calls = []

    def empty() -> dict[str, np.ndarray]:
        empty_calls.append(1)
        return {"logits": np.empty((0, 10), np.float32)}

    with decode_executor(0) as pool:
        pairs = list(scored(engine, batches(items, CpuDecoder(Preprocess(), pool), 2), empty))
    assert [key for batch, _ in pairs for key in batch.keys] == [it.key for it in items]
    assert len(empty_calls) == 2
    for batch, outputs in pairs:
        logits = outputs["logits"]
        assert len(logits) == int(batch.ok.sum())
        if len(logits):
            expected = engine.infer(batch.tensors)["logits"]  # the same batch alone gives the same outputs
            np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    engine.deactivate()


def test_scored_hands_on_batches_without_a_good_image_as_they_come(tmp_path: Path, model: Path) -> None:
    """A stretch of unreadable images is not held back until a good image (or the end) comes."""
    missing = [Item(f"m{i:03d}", "file", str(tmp_path / f"m{i:03d}.jpg")) for i in range(40)]
    engine = create_engine("onnxruntime", model, EngineOptions(batch_size=4, threads=1)).activate()
    pulled = []

    def counted(stream):
        for batch in stream:
            pulled.append(batch)
            yield batch

    with decode_executor(0) as pool:
        seen = [len(pulled) for _ in scored(engine, counted(batches(missing, CpuDecoder(Preprocess(), pool), 4)),
                                            lambda: {"logits": np.empty((0, 10), np.float32)})]
    engine.deactivate()
    assert seen == list(range(1, 11))


def test_topk_is_sorted_softmax() -> None:
    logits = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]], np.float32)
    idx, score = topk(logits, 2)
    assert idx.tolist() == [[1, 2], [2, 0]]
    e = np.exp(logits - logits.max(1, keepdims=True))
    prob = e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(score, np.take_along_axis(prob, idx, 1), rtol=1e-6)


@pytest.mark.parametrize("classes", [3, 1000])
def test_topk_breaks_ties_in_class_order_as_a_stable_sort(classes: int) -> None:
    """Both ways (argmax passes, and the partition above ARGMAX_TOP_K) give what a stable sort of every class
    gives: FP16 logits (many ties), a row of equal logits, a NaN row, a row of one class and -inf; k below, at
    and above the class count."""
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(64, classes)).astype(np.float16).astype(np.float32)
    logits[1] = 0.5
    logits[2] = np.nan
    logits[3] = -np.inf
    logits[3, -1] = 0.0
    z = logits - logits.max(axis=1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    for k in (1, 2, 5, ARGMAX_TOP_K, ARGMAX_TOP_K + 1, classes):
        idx, score = topk(logits, k)
        expected = np.argsort(-prob, axis=1, kind="stable")[:, :k]
        assert np.array_equal(idx, expected) and idx[1].tolist() == list(range(min(k, classes)))
        np.testing.assert_array_equal(score, np.take_along_axis(prob, expected, 1))


class Opening:
    """A context manager that records which thread entered it and how it was left."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.entered_on, self.left_with = fail, None, []
        self.release = threading.Event()

    def __enter__(self) -> str:
        self.entered_on = threading.current_thread()
        self.release.wait(5)
        if self.fail:
            raise RuntimeError("no decoder")
        return "decoder"

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        self.left_with.append(kind)


def test_beside_enters_on_another_thread_while_the_caller_goes_on_and_leaves_once() -> None:
    opening = Opening()
    with _beside(opening) as opened:
        assert opening.left_with == []  # still entering: the caller was not held up
        opening.release.set()
        assert opened() == "decoder" and opening.entered_on is not threading.current_thread()
    assert opening.left_with == [None]


def test_beside_waits_for_the_enter_before_leaving_when_the_caller_fails() -> None:
    opening = Opening()
    with pytest.raises(ValueError, match="engine"), _beside(opening):
        threading.Timer(0.2, opening.release.set).start()
        raise ValueError("engine failed to activate")
    assert opening.left_with == [ValueError]  # entered after the failure, and still left


def test_beside_gives_the_enter_error_to_the_caller_and_does_not_leave() -> None:
    opening = Opening(fail=True)
    opening.release.set()
    with pytest.raises(RuntimeError, match="no decoder"), _beside(opening) as opened:
        opened()
    assert opening.left_with == []
