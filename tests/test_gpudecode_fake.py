"""The GPU decoder's own logic on the CPU, against a small in-process library that implements the GPU library
protocol with numpy (`FakeLibrary`): routing (which files reach the library), the chain of the library's steps,
the fallback to the CPU path (routed and rejected files), the per-decoder counts, one library call a batch, and
rows in input order that equal the CPU decoder's. This runs in CI, beside (never instead of) the real libraries'
tests on a GPU in tests/gpu/test_decode_on_gpu.py.

The fake decodes with Pillow (batchscore.preprocess.decode) into one buffer laid out as the C API lays it out
(`hwjpeg.layout`), and resizes with the CPU path's own steps, so its rows equal the CPU decoder's exactly: any
difference is the decoder's bookkeeping, not pixels."""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from batchscore.decode.cpu import CpuDecoder, decode_executor
from batchscore.decode.gpu import GpuDecoder, probe
from batchscore.decode.hwjpeg import layout
from batchscore.decode.library import Decoded
from batchscore.pipeline import batches
from batchscore.preprocess import Preprocess, decode, resize_crop, to_tensor
from batchscore.sources import Item, list_items

SPEC = Preprocess()
#: a JPEG comment that makes the fake's first (hardware) step reject the image; the second step takes it
HW_REJECTS = b"fake: not for the hardware step"
#: a JPEG comment that makes both of the fake's steps reject the image: the CPU path takes it
ALL_REJECT = b"fake: not for any step"


class _Done:
    def synchronize(self) -> None:
        """Nothing queued: numpy ran it already."""


class NumpyDevice:
    """`library.DeviceOps` on host numpy arrays, with the CPU path's resize and normalisation."""

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        yield

    def empty(self, n: int, shape: tuple[int, ...]) -> np.ndarray:
        return np.full((n, *shape), np.nan, np.float32)

    def fill(self, out: np.ndarray, rows: np.ndarray, decoded: Decoded, spec: Preprocess) -> None:
        for i in np.flatnonzero(decoded.ok):
            h, w = decoded.hw[i]
            start = decoded.offsets[i]
            pixels = decoded.buffer[start:start + h * w * 3].reshape(h, w, 3)
            out[rows[i]] = to_tensor(resize_crop(Image.fromarray(pixels), spec), spec)

    def put(self, out: np.ndarray, rows: np.ndarray, host: np.ndarray) -> None:
        out[rows] = host

    def select(self, out: np.ndarray, good: np.ndarray) -> np.ndarray:
        return out if good.all() else out[good]

    def record(self) -> _Done:
        return _Done()


class FakeLibrary:
    """`library.GpuLibrary` in numpy: two steps as nvImageCodec has (hardware, CUDA), each rejecting the images
    whose JPEG comment says so; one buffer a batch, as the C API hands over."""

    keys = ("gpu_hw", "gpu")

    def __init__(self) -> None:
        self.label, self.steps, self.failed = "fake", ["fake hardware", "fake CUDA"], {}
        self.device = NumpyDevice()
        self.calls: list[int] = []  # images per decode call

    def decode(self, data: list[bytes]) -> Decoded:
        self.calls.append(len(data))
        images = [np.asarray(decode(d)) for d in data]
        hw = np.array([a.shape[:2] for a in images], dtype=np.int64).reshape(-1, 2)
        offsets, nbytes = layout(hw)
        buffer = np.zeros(nbytes, np.uint8)
        step = np.full(len(data), -1, np.int8)
        for i, (d, a) in enumerate(zip(data, images)):
            comment = Image.open(io.BytesIO(d)).info.get("comment", b"")
            if comment != ALL_REJECT:
                buffer[offsets[i]:offsets[i] + a.size] = a.reshape(-1)
                step[i] = 1 if comment == HW_REJECTS else 0
        return Decoded(hw, step, buffer=buffer, offsets=offsets)

    def probe(self, data: bytes) -> None:
        """Every step decodes a valid JPEG."""

    def close(self) -> None:
        """Nothing to let go of."""


def jpeg(image: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **save)
    return buf.getvalue()


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """Sample JPEGs and PNGs, and a file of each case the GPU decoder routes or falls back on."""
    root = tmp_path_factory.mktemp("fake_gpu")
    for p in sorted(sample_dir.rglob("*"))[:30]:
        if p.suffix in (".jpg", ".png"):
            shutil.copy(p, root / p.name)
    photo = Image.open(sorted(sample_dir.rglob("*.jpg"))[0]).convert("RGB")
    (root / "c_hw_rejects.jpg").write_bytes(jpeg(photo, comment=HW_REJECTS))
    (root / "c_all_reject.jpg").write_bytes(jpeg(photo, comment=ALL_REJECT))
    exif = Image.Exif()
    exif[0x0112] = 6
    (root / "c_rotated.jpg").write_bytes(jpeg(photo, exif=exif))
    whole = jpeg(photo)
    (root / "c_truncated.jpg").write_bytes(whole[:len(whole) // 2])
    return root


def cpu_and_fake(items: list[Item], batch_size: int) -> tuple[list, list, FakeLibrary]:
    lib = FakeLibrary()
    with decode_executor(2) as pool:
        cpu = list(batches(items, CpuDecoder(SPEC, pool), batch_size, prefetch=3))
        with contextlib.closing(GpuDecoder(lib, SPEC, pool)) as gpu:
            fake = list(batches(items, gpu, batch_size, prefetch=3))
    return cpu, fake, lib


def test_the_gpu_decoder_routes_falls_back_and_counts_per_batch(archive: Path) -> None:
    items = list_items([archive])
    items.insert(5, Item("c_missing.jpg", "file", str(archive / "c_missing.jpg")))  # unreadable
    cpu, fake, lib = cpu_and_fake(items, 8)
    assert [k for b in fake for k in b.keys] == [it.key for it in items]  # input order
    for a, b in zip(cpu, fake):  # the same errors and exactly the same rows as the CPU decoder's
        assert a.keys == b.keys and a.errors == b.errors
        np.testing.assert_array_equal(a.tensors, b.tensors)
    counts: dict[str, int] = {}
    for b in fake:
        assert sum(b.decoders.values()) == len(b.keys)  # every image counted once
        for key, n in b.decoders.items():
            counts[key] = counts.get(key, 0) + n
    names = [it.key for it in items]
    pngs = sum(k.endswith(".png") for k in names)
    plain = sum(k.endswith(".jpg") and not k.startswith("c_") for k in names)
    assert counts == {"gpu_hw": plain, "gpu": 1, "cpu_fallback": pngs + 2, "failed": 2}  # rotated, all-reject
    assert lib.calls == [sum(1 for k in b.keys if k.endswith(".jpg") and k not in
                             ("c_rotated.jpg", "c_truncated.jpg", "c_missing.jpg")) for b in fake]  # one call a batch
    errors = {k: e for b in fake for k, e in zip(b.keys, b.errors) if e}
    assert sorted(errors) == ["c_missing.jpg", "c_truncated.jpg"]


def test_a_batch_the_library_takes_none_of_is_decoded_on_the_cpu(archive: Path) -> None:
    items = [it for it in list_items([archive]) if it.key.endswith(".png") or it.key == "c_all_reject.jpg"]
    cpu, fake, lib = cpu_and_fake(items, 4)
    assert all(b.decoders["gpu_hw"] == b.decoders["gpu"] == 0 for b in fake)
    assert sum(b.decoders["cpu_fallback"] for b in fake) == len(items)
    for a, b in zip(cpu, fake):
        np.testing.assert_array_equal(a.tensors, b.tensors)


def test_the_probe_checks_the_pixels_through_the_tensor_steps() -> None:
    """A library whose pixels come out wrong fails the probe (the rank then decodes on the CPU, or exits)."""
    probe(FakeLibrary())

    class Wrong(FakeLibrary):
        def decode(self, data: list[bytes]) -> Decoded:
            decoded = super().decode(data)
            decoded.buffer[:] = 0
            return decoded

    with pytest.raises(RuntimeError, match=r"decoded a 64×64 \(200, 40, 60\) JPEG to channel means"):
        probe(Wrong())
