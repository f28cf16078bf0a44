"""GPU decode on a real GPU, with each decode library installed (torchvision's nvJPEG; nvImageCodec's
hardware then CUDA decoder): tensors close to the CPU path's with the same top-1 on the sample, bad images
inside a GPU batch set aside with the CPU path's reason while the rest decode, files a GPU decoder must not
take (PNG, CMYK, EXIF-rotated; grayscale if it fails) decoded by the CPU path, the C API's one-buffer hand-over
giving the rows that per-image copies give, the fallback library where the C call is missing, and `batchscore
score --decode gpu` against `--decode cpu` (with no extension load errors in the log). Skips without CUDA or
torch. The decoder's routing, fallback and counts also run on the CPU in tests/test_gpudecode_fake.py."""

from __future__ import annotations

import io
import json
from contextlib import closing
from pathlib import Path

import h5py
import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")

from batchscore.config import job_from_dict  # noqa: E402
from batchscore.decode import hwjpeg  # noqa: E402
from batchscore.decode.cpu import CpuDecoder, decode_executor  # noqa: E402
from batchscore.decode.gpu import (GpuDecoder, default_workers, libraries, open_gpu_decoder, open_library,  # noqa: E402
                                   probe)
from batchscore.decode.library import Decoded, GpuLibrary  # noqa: E402
from batchscore.decode.tensorops import resize_crop_normalise, same_size  # noqa: E402
from batchscore.pipeline import Batch, batches  # noqa: E402
from batchscore.preprocess import Preprocess  # noqa: E402
from batchscore.sources import list_items  # noqa: E402
from conftest import batchscore, write_job  # noqa: E402

SPEC = Preprocess()
MEAN_TOL = 0.03  # normalised units: one 8-bit level is about 0.0175
IMAGE_MEAN_TOL = 0.06


@pytest.fixture(scope="module", params=["torchvision", "nvimgcodec"])
def decoder(request: pytest.FixtureRequest) -> GpuLibrary:
    if request.param not in libraries(request.param):
        pytest.skip(f"{request.param} is not installed")
    lib = open_library(request.param, 0, 4)
    probe(lib)
    yield lib
    lib.close()


def on_gpu(counted: dict[str, int]) -> int:
    """Images a GPU step decoded: the hardware decoder's and the CUDA decoder's."""
    return counted.get("gpu_hw", 0) + counted.get("gpu", 0)


def decode(folder: Path, lib: GpuLibrary | None, batch_size: int = 16) -> list[Batch]:
    with decode_executor(4) as pool:
        with closing(GpuDecoder(lib, SPEC, pool) if lib else CpuDecoder(SPEC, pool)) as decoder:
            return list(batches(list_items([folder]), decoder, batch_size))


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
                                                              decoder: GpuLibrary) -> None:
    cpu, gpu = decode(sample_dir, None), decode(sample_dir, decoder)
    assert [b.keys for b in gpu] == [b.keys for b in cpu] and [b.errors for b in gpu] == [b.errors for b in cpu]
    assert all(isinstance(b.tensors, torch.Tensor) and b.tensors.is_cuda for b in gpu)
    c, g = rows(cpu), rows(gpu)
    diff = np.abs(c - g)
    per_image = diff.reshape(len(diff), -1).mean(axis=1)
    stats = f"mean {diff.mean():.4f}, worst image {per_image.max():.4f}, p99 {np.percentile(diff, 99):.3f}"
    assert diff.mean() < MEAN_TOL and per_image.max() < IMAGE_MEAN_TOL, stats
    jpgs, pngs = len(list(sample_dir.rglob("*.jpg"))), len(list(sample_dir.rglob("*.png")))
    assert default_workers(16, True) == 2  # the workers only read for the GPU decoder
    used = counts(gpu)
    assert on_gpu(used) == jpgs and (used["cpu_fallback"], used["failed"], used.get("cpu", 0)) == (pngs, 0, 0), used
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
                                                                         decoder: GpuLibrary) -> None:
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
    used = counts(gpu)
    assert on_gpu(used) == 7 and (used["cpu_fallback"], used["failed"], used.get("cpu", 0)) == (0, 4, 0), used
    diff = np.abs(rows(cpu) - rows(gpu))
    assert len(diff) == 7 and diff.mean() < MEAN_TOL


def test_a_batch_with_a_broken_image_still_decodes_the_others(tmp_path: Path, sample_dir: Path,
                                                               decoder: GpuLibrary) -> None:
    good = [p.read_bytes() for p in sorted(sample_dir.rglob("*.jpg"))[:4]]
    junk = b"\xff\xd8" + b"B" * 2048  # no marker after SOI
    (tmp_path / "junk.jpg").write_bytes(junk)
    with decoder.device.active():
        mixed = decoder.decode([good[0], good[1], junk, good[2], good[3]])
        images = [image(mixed, i) for i in range(5)]
        alone = decoder.decode(good)
        expected = [image(alone, i) for i in range(4)]
        decoder.device.stream.synchronize()
    assert [got is None for got in images] == [False, False, True, False, False]
    for got, want in zip([images[i] for i in (0, 1, 3, 4)], expected):  # as in one call without the junk
        assert got.shape == want.shape and (got.int() - want.int()).abs().max() <= 2


def image(decoded: Decoded, i: int) -> torch.Tensor | None:
    """Input i of a decode call as a CHW uint8 tensor (a copy); None where it was not decoded."""
    if not decoded.ok[i]:
        return None
    h, w = (int(v) for v in decoded.hw[i])
    return same_size(decoded, np.array([i]), h, w)[0].clone()


def test_files_nvjpeg_must_not_take_fall_back_to_the_cpu_path(tmp_path: Path, sample_dir: Path,
                                                              decoder: GpuLibrary) -> None:
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
    assert used["cpu_fallback"] >= 3 and on_gpu(used) + used["cpu_fallback"] == 4 and used["failed"] == 0


def test_the_c_api_hands_over_one_buffer_that_gives_the_rows_of_per_image_copies(tmp_path: Path,
                                                                                 sample_dir: Path) -> None:
    """nvImageCodec's hardware then CUDA step, a batch a call through the C API (`hwjpeg`, built at install): over
    batches of many image sizes with broken files among them, one buffer with the images at their offsets, whose
    rows equal those of the same images copied out one by one; the broken files go to the CPU path."""
    if not libraries("nvimgcodec"):
        pytest.skip("nvimgcodec is not installed")
    goods = sorted(sample_dir.rglob("*.jpg"))[:45]
    for p in goods:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    for name, data in bad_files(goods[0].read_bytes()).items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8" + b"B" * 2048)
    lib = open_library("nvimgcodec", 0, 4)
    try:
        probe(lib)
        assert "hardware" in lib.steps, lib.failed
        with lib.device.active():
            decoded = lib.decode([p.read_bytes() for p in goods])
            copies = Decoded(decoded.hw, decoded.step, images=[image(decoded, i) for i in range(len(goods))])
            out = [torch.full((len(goods), *SPEC.shape), float("nan"), device="cuda") for _ in range(2)]
            resize_crop_normalise(out[0], np.arange(len(goods)), decoded, SPEC)
            resize_crop_normalise(out[1], np.arange(len(goods)), copies, SPEC)
            lib.device.stream.synchronize()
        assert decoded.buffer is not None and decoded.ok.all() and len({tuple(x) for x in decoded.hw}) > 10
        assert torch.equal(out[0], out[1])
        batched = decode(tmp_path, lib, batch_size=16)
    finally:
        lib.close()
    assert len(batched) >= 3 and counts(batched)["gpu_hw"] >= 30, counts(batched)
    assert sum(bool(e) for x in batched for e in x.errors) == 5


def test_progressive_jpegs_take_the_cuda_step_in_the_same_call(sample_dir: Path) -> None:
    """The C call gives progressive JPEGs (which the hardware decoder refuses) to the CUDA decoder beside the
    hardware one: in one batch of baseline and progressive files, each kind is decoded by its own step, the
    progressive ones to the rows that the CUDA step alone gives."""
    if not libraries("nvimgcodec"):
        pytest.skip("nvimgcodec is not installed")
    photos = [Image.open(p).convert("RGB") for p in sorted(sample_dir.rglob("*.jpg"))[:24]]
    data = [jpeg_bytes(im, quality=90, progressive=i % 3 == 0) for i, im in enumerate(photos)]
    progressive = np.array([i % 3 == 0 for i in range(len(data))])
    lib = open_library("nvimgcodec", 0, 4)
    try:
        probe(lib)
        if lib.steps != ["hardware", "CUDA"]:
            pytest.skip(f"needs both steps: {lib.failed}")
        out = [torch.full((len(data), *SPEC.shape), float("nan"), device="cuda") for _ in range(2)]
        with lib.device.active():
            both = lib.decode(data)
            resize_crop_normalise(out[0], np.arange(len(data)), both, SPEC)
            lib.native.steps = [1]
            alone = lib.decode(data)
            resize_crop_normalise(out[1], np.arange(len(data)), alone, SPEC)
            lib.device.stream.synchronize()
    finally:
        lib.close()
    assert (both.step[progressive] == 1).all() and (both.step[~progressive] == 0).all(), both.step
    assert (alone.step == 1).all()
    assert (out[0][progressive] == out[1][progressive]).all()  # the same decoder: the same pixels
    assert torch.isfinite(out[0]).all()  # every row filled


def test_without_the_c_call_auto_decodes_with_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """An install without the C call (no compiler then): nvimgcodec does not open, says why, and gpu_decoder =
    "auto" takes torchvision's nvJPEG."""
    if libraries("auto") != ["nvimgcodec", "torchvision"]:
        pytest.skip("needs both nvimgcodec and torchvision installed")

    def missing() -> Path:
        raise OSError("batchscore was installed without its nvImageCodec C call")

    monkeypatch.setattr(hwjpeg, "_built", missing)
    job = job_from_dict({"input": "x", "model": "m.onnx", "output": "o", "decode": "gpu"}, Path("/"))
    with open_gpu_decoder("gpu", job, 0, 0, 4) as lib:
        assert lib is not None and lib.label.startswith("nvJPEG (torchvision"), lib.label


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
    for mode, compiled in (("cpu", "eager"), ("gpu", "cudagraph")):  # the decoder opens while the graphs are captured
        res = batchscore("score", "--job", str(job), "--decode", mode, "--output", str(tmp_path / mode),
                         "--compile", compiled)
        assert res.returncode == 0, res.stderr
        assert "torch engine on cuda:0" in res.stderr and "ready in" in res.stderr
        with h5py.File(tmp_path / mode / "scores.h5", "r") as f:
            results[mode] = (f["status"][:], f["topk_index"][:, 0])
        summary = json.loads((tmp_path / mode / "summary.json").read_text())
        assert summary["decode"] == mode and summary["decoders"]["failed"] == 4
    assert (results["gpu"][0] == results["cpu"][0]).all()
    ok = results["cpu"][0] == 0
    assert (results["gpu"][1][ok] == results["cpu"][1][ok]).all()
    assert on_gpu(summary["decoders"]) > 0 and summary["per_rank"][0]["device"].startswith("cuda:0")
    assert summary["per_rank"][0]["stages"]["gpu"] > 0
    assert "warming up on 8 images" in res.stderr  # the rank's first batch, bad files in it skipped
    assert "nvjpeg2k" not in res.stderr and "nvtiff" not in res.stderr.lower()  # only the JPEG extension loads
