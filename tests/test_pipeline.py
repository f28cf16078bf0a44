"""The decode pipeline for real: threads and inline give the same batches, in input order, bad images set aside."""

import io
import shutil
import tarfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchscore.decode.cpu import CpuDecoder, decode_executor
from batchscore.pipeline import batches, default_prefetch
from batchscore.reading import SPAN_GAP, read_ahead, read_item, tar_spans
from batchscore.preprocess import Preprocess, decode, preprocess
from batchscore.sources import list_items

SPEC = Preprocess()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """Sample images with bad files between them (truncated, empty, not an image)."""
    root = tmp_path_factory.mktemp("mixed")
    good = sorted(p for p in sample_dir.rglob("*") if p.suffix in (".jpg", ".png"))[:21]
    for p in good:
        shutil.copy(p, root / p.name)
    jpeg = good[0].read_bytes()
    (root / f"{good[3].stem}_cut.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (root / f"{good[7].stem}_empty.jpg").write_bytes(b"")
    (root / f"{good[12].stem}_text.png").write_text("not a PNG")
    return root


def run(items: list, workers: int, batch_size: int, prefetch: int = 2) -> list:
    with decode_executor(workers) as pool:
        return list(batches(items, CpuDecoder(SPEC, pool), batch_size, prefetch))


def test_threads_match_inline_and_the_reference_in_order(mixed: Path) -> None:
    items = list_items([mixed])
    inline, threaded = run(items, 0, 5), run(items, 2, 5, prefetch=3)
    assert [k for b in threaded for k in b.keys] == [it.key for it in items]  # input order
    assert [len(b.keys) for b in threaded] == [5, 5, 5, 5, 4]
    for a, b in zip(inline, threaded):
        assert a.keys == b.keys and a.errors == b.errors
        np.testing.assert_array_equal(a.ok, b.ok)
        np.testing.assert_array_equal(a.tensors, b.tensors)
        good = [k for k, ok in zip(b.keys, b.ok) if ok]
        assert b.tensors.shape == (len(good), *SPEC.shape) and b.tensors.dtype == np.float32
        for key, tensor in zip(good, b.tensors):  # each row is exactly preprocess() of its own file
            np.testing.assert_array_equal(tensor, preprocess((mixed / key).read_bytes(), SPEC))
        assert b.read_seconds > 0 and b.decode_seconds > 0 and b.wait_seconds >= 0
    # inline, decoding happens while the consumer asks for the next batch: all of it is waiting
    assert sum(b.wait_seconds for b in inline) >= sum(b.read_seconds + b.decode_seconds for b in inline)
    errors = {k: e for b in threaded for k, e in zip(b.keys, b.errors) if e}
    assert sorted(errors) == sorted(p.name for p in mixed.iterdir() if p.stem.endswith(("_cut", "_empty", "_text")))
    assert "empty file" in next(e for k, e in errors.items() if "_empty" in k)


def test_prefetch_keeps_two_batches_beyond_the_gpu_decoder_thread() -> None:
    """CPU decode: enough batches for the workers (at least 2); with a GPU decoder, two batches beyond its
    thread's, so that a batch's reads are done before the decoder thread needs them."""
    assert [default_prefetch(w, 256) for w in (0, 1, 17, 256, 1024)] == [2, 2, 2, 3, 9]
    assert default_prefetch(1, 256, gpu=True) == 3


def test_a_batch_of_only_bad_images_is_empty_not_an_error(mixed: Path) -> None:
    items = [it for it in list_items([mixed]) if it.key.endswith(("_cut.jpg", "_empty.jpg", "_text.png"))]
    (batch,) = run(items, 2, 8)
    assert batch.tensors.shape == (0, *SPEC.shape) and not batch.ok.any() and all(batch.errors)


def test_threads_read_one_tar_like_the_folder(tmp_path: Path, sample_dir: Path) -> None:
    files = sorted(p for p in sample_dir.rglob("*") if p.suffix in (".jpg", ".png"))[:16]
    with tarfile.open(tmp_path / "shard.tar", "w") as tar:
        for p in files:
            tar.add(p, arcname=p.relative_to(sample_dir).as_posix())
    from_tar = np.concatenate([b.tensors for b in run(list_items([tmp_path / "shard.tar"]), 3, 4)])
    expected = np.stack([preprocess(p.read_bytes(), SPEC) for p in files])
    np.testing.assert_array_equal(from_tar, expected)


def test_tar_members_of_a_batch_come_in_one_read_per_shard(tmp_path: Path, sample_dir: Path) -> None:
    """Two shards and a folder image in one batch: one span per shard, bytes as read one by one; a member far
    past the others (a large non-image member between) starts a span of its own."""
    files = sorted(p for p in sample_dir.rglob("*.jpg"))[:10]
    for name, part in (("a.tar", files[:4]), ("b.tar", files[4:9])):
        with tarfile.open(tmp_path / name, "w") as tar:
            for p in part:
                tar.add(p, arcname=p.name)
            if name == "b.tar":  # 2 MB of something else, then one more image
                info = tarfile.TarInfo("notes.bin")
                info.size = 2 * SPAN_GAP
                tar.addfile(info, io.BytesIO(bytes(info.size)))
                tar.add(files[9], arcname="z_last.jpg")
    (tmp_path / "loose").mkdir()
    shutil.copy(files[0], tmp_path / "loose" / "x.jpg")
    items = list_items([tmp_path / "a.tar", tmp_path / "b.tar", tmp_path / "loose"])
    assert [it.kind for it in items] == ["tar"] * 10 + ["file"]
    assert tar_spans(items) == [[0, 1, 2, 3], [4, 5, 6, 7, 8]]  # z_last.jpg and the loose file: read alone
    ahead = read_ahead(items)
    assert sorted(ahead.data) == list(range(9)) and ahead.seconds > 0
    for i in range(9):
        assert ahead.data[i] == read_item(items[i])[0] == (files[:9][i]).read_bytes()


def test_a_truncated_shard_still_gives_its_whole_members_and_error_rows(tmp_path: Path, sample_dir: Path) -> None:
    files = sorted(p for p in sample_dir.rglob("*.jpg"))[:6]
    with tarfile.open(tmp_path / "shard.tar", "w") as tar:
        for p in files:
            tar.add(p, arcname=p.name)
    items = list_items([tmp_path / "shard.tar"])
    cut = items[3].offset + items[3].size // 2  # the file ends inside member 3
    data = (tmp_path / "shard.tar").read_bytes()[:cut]
    (tmp_path / "shard.tar").write_bytes(data)
    assert sorted(read_ahead(items).data) == [0, 1, 2]
    (batch,) = run(items, 3, 8)  # the listing was made before the cut, as when a shard is cut mid-run
    assert batch.errors[:3] == ["", "", ""] and all("truncated" in e for e in batch.errors[3:]), batch.errors
    np.testing.assert_array_equal(batch.tensors, np.stack([preprocess(p.read_bytes(), SPEC) for p in files[:3]]))


def photo(w: int, h: int) -> bytes:
    """A smooth photo-like JPEG (gradients + blurred noise): what draft mode is meant for."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    noise = Image.fromarray(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8)).resize((w, h))
    buf = io.BytesIO()
    Image.fromarray((0.6 * base + 0.4 * np.asarray(noise)).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_draft_decodes_large_jpegs_smaller_and_close() -> None:
    data = photo(2048, 1536)
    assert decode(data).size == (2048, 1536)
    assert decode(data, draft=(256, 256)).size == (512, 384)  # 1/4 scale: both sides still >= 256
    full, drafted = preprocess(data, SPEC), preprocess(data, SPEC, draft=True)
    assert not np.array_equal(full, drafted)  # draft really changes the decode path...
    assert np.abs(full - drafted).mean() < 0.05  # ...by a few grey levels (normalised units: ~1/255/0.225)


def test_draft_changes_only_large_jpegs_and_keeps_the_sample_top1(sample_dir: Path, model: Path) -> None:
    """Draft only touches JPEGs >= 2x the resize target on both sides; the model's answers stay the same."""
    import onnxruntime as ort

    files = sorted(p for p in sample_dir.rglob("*") if p.suffix in (".jpg", ".png"))
    full = np.stack([preprocess(p.read_bytes(), SPEC) for p in files])
    drafted = np.stack([preprocess(p.read_bytes(), SPEC, draft=True) for p in files])
    changed = [not np.array_equal(a, b) for a, b in zip(full, drafted)]
    large = [p.suffix == ".jpg" and min(Image.open(p).size) >= 2 * SPEC.resize for p in files]
    assert changed == large and any(large)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    top1 = [session.run(None, {"input": x})[0].argmax(1) for x in (full, drafted)]
    np.testing.assert_array_equal(top1[0], top1[1])


class Recording(ThreadPoolExecutor):
    """A real thread pool that keeps the futures it hands out, to see what became of them."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.futures: list[Future] = []

    def submit(self, fn, /, *args, **kwargs) -> Future:  # noqa: ANN001
        future = super().submit(fn, *args, **kwargs)
        self.futures.append(future)
        return future


def test_stopping_early_cancels_the_queued_work(sample_dir: Path) -> None:
    items = list_items([sample_dir])
    with Recording(1) as pool:
        gen = batches(items, CpuDecoder(SPEC, pool), 4, prefetch=6)
        first = next(gen)
        gen.close()  # what a loop stopped by a signal does
    assert len(first.keys) == 4 and len(pool.futures) == 4 * 7  # 6 batches ahead, 1 more once the first was taken
    cancelled = [f for f in pool.futures if f.cancelled()]
    assert cancelled and all(f.done() for f in pool.futures)  # nothing left running or queued
