"""GPU decode on a real GPU: nvJPEG tensors close to the CPU path's with the same top-1 on the sample,
bad images inside a GPU batch set aside with the CPU path's reason while the rest decode, files nvJPEG
must not take (PNG, CMYK, EXIF-rotated; grayscale if it fails) decoded by the CPU path, hybrid batches,
and `batchscore score --decode gpu` against `--decode cpu`. Skips without CUDA or torchvision."""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")

from batchscore.gpudecode import GpuDecoder  # noqa: E402
from batchscore.pipeline import Batch, batches, decode_executor  # noqa: E402
from batchscore.preprocess import Preprocess  # noqa: E402
from batchscore.sources import list_items  # noqa: E402
from conftest import batchscore, write_job  # noqa: E402

SPEC = Preprocess()
MEAN_TOL = 0.03  # normalised units: one 8-bit level is about 0.0175
IMAGE_MEAN_TOL = 0.06


@pytest.fixture(scope="module")
def decoder() -> GpuDecoder:
    gpu = GpuDecoder(0)
    gpu.probe()
    yield gpu
    gpu.close()


def decode(folder: Path, gpu: GpuDecoder | None, batch_size: int = 16) -> list[Batch]:
    with decode_executor(4) as pool:
        return list(batches(list_items([folder]), SPEC, batch_size, pool, gpu=gpu))


def rows(decoded: list[Batch]) -> np.ndarray:
    return np.concatenate([b.tensors.cpu().numpy() if isinstance(b.tensors, torch.Tensor) else b.tensors
                           for b in decoded])


def counts(decoded: list[Batch]) -> dict[str, int]:
    total: dict[str, int] = {}
    for b in decoded:
        for k, v in b.decoders.items():
            total[k] = total.get(k, 0) + v
    return total


def jpeg_bytes(image: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **save)
    return buf.getvalue()


def test_gpu_tensors_close_to_the_cpu_path_with_the_same_top1(sample_dir: Path, model: Path,
                                                              decoder: GpuDecoder) -> None:
    cpu, gpu = decode(sample_dir, None), decode(sample_dir, decoder)
    assert [b.keys for b in gpu] == [b.keys for b in cpu] and [b.errors for b in gpu] == [b.errors for b in cpu]
    assert all(isinstance(b.tensors, torch.Tensor) and b.tensors.is_cuda for b in gpu)
    c, g = rows(cpu), rows(gpu)
    diff = np.abs(c - g)
    per_image = diff.reshape(len(diff), -1).mean(axis=1)
    stats = f"mean {diff.mean():.4f}, worst image {per_image.max():.4f}, p99 {np.percentile(diff, 99):.3f}"
    assert diff.mean() < MEAN_TOL and per_image.max() < IMAGE_MEAN_TOL, stats
    jpgs, pngs = len(list(sample_dir.rglob("*.jpg"))), len(list(sample_dir.rglob("*.png")))
    assert counts(gpu) == {"gpu": jpgs, "cpu_fallback": pngs, "failed": 0, "cpu": 0}
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    top1 = [session.run(None, {"input": x})[0].argmax(1) for x in (c, g)]
    assert (top1[0] == top1[1]).all(), f"{(top1[0] != top1[1]).sum()} of {len(c)} differ; {stats}"


def bad_files(good: bytes) -> dict[str, bytes]:
    """Broken JPEGs: bad sampling factors, an undefined table, truncated, not an image at all."""
    sof = good.index(b"\xff\xc0")
    zero_sampling = bytearray(good)
    zero_sampling[sof + 11] = 0x00  # component 1: sampling factors 0x0
    bad_table = bytearray(good)
    bad_table[sof + 12] = 0x03  # component 1 uses quantization table 3, never defined
    return {"zero_sampling.jpg": bytes(zero_sampling), "undefined_table.jpg": bytes(bad_table),
            "truncated.jpg": good[:len(good) // 3], "not_an_image.jpg": b"\xff\xd8\xff\xe0 hello"}


def test_bad_images_inside_a_gpu_batch_are_set_aside_and_the_rest_decode(tmp_path: Path, sample_dir: Path,
                                                                         decoder: GpuDecoder) -> None:
    goods = sorted(sample_dir.rglob("*.jpg"))[:7]
    for p in goods:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    bad = bad_files(goods[0].read_bytes())
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    cpu, gpu = decode(tmp_path, None, batch_size=32), decode(tmp_path, decoder, batch_size=32)
    assert len(gpu) == 1 and gpu[0].keys == cpu[0].keys
    assert gpu[0].errors == cpu[0].errors  # the CPU path's reason for each bad image
    assert {k for k, e in zip(gpu[0].keys, gpu[0].errors) if e} == set(bad)
    assert counts(gpu) == {"gpu": 7, "cpu_fallback": 0, "failed": 4, "cpu": 0}
    diff = np.abs(rows(cpu) - rows(gpu))
    assert len(diff) == 7 and diff.mean() < MEAN_TOL


def test_a_batch_nvjpeg_rejects_is_decoded_one_image_at_a_time(sample_dir: Path, decoder: GpuDecoder) -> None:
    files = sorted(sample_dir.rglob("*.jpg"))[:4]
    good = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in files]
    junk = torch.frombuffer(bytearray(b"\xff\xd8" + b"B" * 2048), dtype=torch.uint8)  # no marker after SOI
    with torch.cuda.device(0):
        images = decoder._nvjpeg([good[0], good[1], junk, good[2], good[3]])
    assert [image is None for image in images] == [False, False, True, False, False]
    expected = decoder._nvjpeg(good)  # the same images in one batched call
    for got, want in zip([images[i] for i in (0, 1, 3, 4)], expected):
        assert got.shape == want.shape and (got.int() - want.int()).abs().max() <= 2


def test_files_nvjpeg_must_not_take_fall_back_to_the_cpu_path(tmp_path: Path, sample_dir: Path,
                                                              decoder: GpuDecoder) -> None:
    photo = Image.open(sorted(sample_dir.rglob("*.jpg"))[0]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    png = io.BytesIO()
    photo.save(png, "PNG")
    files = {"a_png.png": png.getvalue(), "b_cmyk.jpg": jpeg_bytes(photo.convert("CMYK")),
             "c_rotated.jpg": jpeg_bytes(photo, exif=exif.tobytes()), "d_gray.jpg": jpeg_bytes(photo.convert("L"))}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    cpu, gpu = decode(tmp_path, None), decode(tmp_path, decoder)
    c, g = rows(cpu), rows(gpu)
    np.testing.assert_array_equal(g[:3], c[:3])  # PNG, CMYK, rotated: decoded by the CPU path itself
    assert np.abs(g[3] - c[3]).mean() < MEAN_TOL  # grayscale: by nvJPEG (or the CPU path if it refuses)
    used = counts(gpu)
    assert used["cpu_fallback"] >= 3 and used["gpu"] + used["cpu_fallback"] == 4 and used["failed"] == 0


def test_hybrid_batches_split_between_gpu_and_cpu(sample_dir: Path) -> None:
    hybrid = GpuDecoder(0, share=0.5)
    try:
        cpu, mixed = decode(sample_dir, None), decode(sample_dir, hybrid)
    finally:
        hybrid.close()
    assert [b.keys for b in mixed] == [b.keys for b in cpu] and [b.errors for b in mixed] == [b.errors for b in cpu]
    used = counts(mixed)
    assert used["cpu"] == sum(len(b.keys) - round(len(b.keys) * 0.5) for b in cpu) and used["gpu"] > 0
    assert np.abs(rows(cpu) - rows(mixed)).mean() < MEAN_TOL


def test_score_with_gpu_decode_matches_cpu_decode(tmp_path: Path, sample_dir: Path, model: Path) -> None:
    (tmp_path / "in").mkdir()
    for p in sorted(sample_dir.rglob("*"))[:30]:
        if p.suffix in (".jpg", ".png"):
            (tmp_path / "in" / p.name).write_bytes(p.read_bytes())
    for name, data in bad_files(next(sample_dir.rglob("*.jpg")).read_bytes()).items():
        (tmp_path / "in" / name).write_bytes(data)
    job = write_job(tmp_path / "job.toml", input=str(tmp_path / "in"), model=str(model),
                    output=str(tmp_path / "out"), backend="torch", batch_size=8)
    results = {}
    for mode in ("cpu", "gpu"):
        res = batchscore("score", "--job", str(job), "--decode", mode, "--output", str(tmp_path / mode))
        assert res.returncode == 0, res.stderr
        with h5py.File(tmp_path / mode / "scores.h5", "r") as f:
            results[mode] = (f["status"][:], f["topk_index"][:, 0])
        summary = json.loads((tmp_path / mode / "summary.json").read_text())
        assert summary["decode"] == mode and summary["decoders"]["failed"] == 4
    assert (results["gpu"][0] == results["cpu"][0]).all()
    ok = results["cpu"][0] == 0
    assert (results["gpu"][1][ok] == results["cpu"][1][ok]).all()
    assert summary["decoders"]["gpu"] > 0 and summary["per_rank"][0]["device"].startswith("cuda:0")
