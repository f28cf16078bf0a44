"""GPU decode on a real GPU, with each decode library installed (torchvision's nvJPEG; nvImageCodec's
hardware then CUDA decoder): tensors close to the CPU path's with the same top-1 on the sample, bad images
inside a GPU batch set aside with the CPU path's reason while the rest decode, files a GPU decoder must not
take (PNG, CMYK, EXIF-rotated; grayscale if it fails) decoded by the CPU path, hybrid batches (fixed and
balanced share), nvImageCodec decoding into reused images as it does into new ones, and `batchscore score
--decode gpu` against `--decode cpu`. Skips without CUDA or torch."""

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
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to PyTorch")

from batchscore import hwjpeg  # noqa: E402
from batchscore.gpudecode import GpuDecoder, ReusedImages, ShareTuner, default_workers, libraries  # noqa: E402
from batchscore.pipeline import Batch, batches, decode_executor  # noqa: E402
from batchscore.preprocess import Preprocess  # noqa: E402
from batchscore.sources import list_items  # noqa: E402
from conftest import batchscore, write_job  # noqa: E402

SPEC = Preprocess()
MEAN_TOL = 0.03  # normalised units: one 8-bit level is about 0.0175
IMAGE_MEAN_TOL = 0.06


@pytest.fixture(scope="module", params=["torchvision", "nvimgcodec"])
def decoder(request: pytest.FixtureRequest) -> GpuDecoder:
    if request.param not in libraries(request.param):
        pytest.skip(f"{request.param} is not installed")
    gpu = GpuDecoder(0, library=request.param, threads=4)
    gpu.probe()
    yield gpu
    gpu.close()


def on_gpu(counted: dict[str, int]) -> int:
    """Images a GPU step decoded: the hardware decoder's and the CUDA decoder's."""
    return counted.get("gpu_hw", 0) + counted.get("gpu", 0)


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
    assert default_workers(16, decoder) == 2  # the workers only read for a decoder that takes every image
    used = counts(gpu)
    assert on_gpu(used) == jpgs and (used["cpu_fallback"], used["failed"], used["cpu"]) == (pngs, 0, 0), used
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
    used = counts(gpu)
    assert on_gpu(used) == 7 and (used["cpu_fallback"], used["failed"], used["cpu"]) == (0, 4, 0), used
    diff = np.abs(rows(cpu) - rows(gpu))
    assert len(diff) == 7 and diff.mean() < MEAN_TOL


def test_a_batch_with_a_broken_image_still_decodes_the_others(tmp_path: Path, sample_dir: Path,
                                                               decoder: GpuDecoder) -> None:
    good = [p.read_bytes() for p in sorted(sample_dir.rglob("*.jpg"))[:4]]
    junk = b"\xff\xd8" + b"B" * 2048  # no marker after SOI
    (tmp_path / "junk.jpg").write_bytes(junk)
    try:
        prepared = [decoder.lib.prepare(d) for d in (good[0], good[1], junk, good[2], good[3])]
    except RuntimeError:  # nvImageCodec parses the headers when reading: the worker sends the file to the CPU path
        data, encoded, error, _ = decoder._read(list_items([tmp_path]), range(1), SPEC.max_pixels)[0]
        assert data == junk and encoded is None and error == ""
        pytest.skip(f"{decoder.lib.label} refuses the broken file before decoding (checked above)")
    with torch.cuda.device(0):
        stream = decoder.lanes[0].stream
        images = [image for image, _ in decoder.lib.decode(prepared, stream)]
        expected = [image for image, _ in decoder.lib.decode([decoder.lib.prepare(d) for d in good], stream)]
        stream.synchronize()
    assert [image is None for image in images] == [False, False, True, False, False]
    for got, want in zip([images[i] for i in (0, 1, 3, 4)], expected):  # as in one call without the junk
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
    assert used["cpu_fallback"] >= 3 and on_gpu(used) + used["cpu_fallback"] == 4 and used["failed"] == 0


def test_two_lanes_give_the_same_batches_in_order(sample_dir: Path, decoder: GpuDecoder) -> None:
    """Batches take turns between two decoder threads (streams, library instances): same tensors, same order."""
    two = GpuDecoder(0, library=decoder.library, threads=4, lanes=2)
    try:
        two.probe()
        one, both = decode(sample_dir, decoder, batch_size=8), decode(sample_dir, two, batch_size=8)
    finally:
        two.close()
    assert len(both) > 2 and [b.keys for b in both] == [b.keys for b in one]
    assert [b.errors for b in both] == [b.errors for b in one] and counts(both) == counts(one)
    np.testing.assert_array_equal(rows(both), rows(one))


def test_images_decoded_into_reused_buffers_equal_new_ones(sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nvImageCodec's first step through its Python API decodes into the image sets of earlier batches
    (`ReusedImages`): over many batches of images of many sizes, the tensors equal those of a decoder that makes
    new images every batch."""
    if not libraries("nvimgcodec"):
        pytest.skip("nvimgcodec is not installed")
    monkeypatch.setenv(hwjpeg.OFF, "0")
    reused, fresh = GpuDecoder(0, library="nvimgcodec", threads=4), GpuDecoder(0, library="nvimgcodec", threads=4)
    try:
        reused.probe(), fresh.probe()
        assert reused.lib.reused is not None, "this nvImageCodec cannot decode into given images"
        fresh.lib.reused = None
        a, b = decode(sample_dir, reused, batch_size=2), decode(sample_dir, fresh, batch_size=2)
    finally:
        reused.close(), fresh.close()
    assert len(a) > 6 * ReusedImages.SETS and on_gpu(counts(a)) > 30 and counts(a) == counts(b)
    assert [x.errors for x in a] == [x.errors for x in b]
    np.testing.assert_array_equal(rows(a), rows(b))


def test_the_c_api_decodes_as_the_python_api(tmp_path: Path, sample_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The hardware step a batch a call through nvImageCodec's C API (`hwjpeg`, built here with the machine's
    compiler): over batches of many image sizes with broken files among them, the same tensors, step counts and
    errors as through its Python API."""
    if not libraries("nvimgcodec"):
        pytest.skip("nvimgcodec is not installed")
    goods = sorted(sample_dir.rglob("*.jpg"))[:45]
    for p in goods:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    for name, data in bad_files(goods[0].read_bytes()).items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8" + b"B" * 2048)
    c_api = GpuDecoder(0, library="nvimgcodec", threads=4)
    monkeypatch.setenv(hwjpeg.OFF, "0")
    python_api = GpuDecoder(0, library="nvimgcodec", threads=4)
    try:
        c_api.probe(), python_api.probe()
        assert c_api.lib.native is not None, c_api.lib.label
        assert python_api.lib.native is None and "C API off" in python_api.lib.label
        a, b = decode(tmp_path, c_api, batch_size=16), decode(tmp_path, python_api, batch_size=16)
    finally:
        c_api.close(), python_api.close()
    assert len(a) >= 3
    assert len({Image.open(p).size for p in goods}) > 10  # many sizes in each batch
    assert counts(a) == counts(b) and counts(a)["gpu_hw"] >= 30, counts(a)
    assert [x.errors for x in a] == [x.errors for x in b] and sum(bool(e) for x in a for e in x.errors) == 5
    np.testing.assert_array_equal(rows(a), rows(b))


def test_without_a_compiler_the_hardware_step_stays_on_the_python_api(tmp_path: Path, sample_dir: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if not libraries("nvimgcodec"):
        pytest.skip("nvimgcodec is not installed")
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("BATCHSCORE_CACHE", str(tmp_path / "cache"))
    gpu = GpuDecoder(0, library="nvimgcodec", threads=4)
    try:
        gpu.probe()
        assert gpu.lib.native is None and "C API off: OSError" in gpu.lib.label and "no-such-cc" in gpu.lib.label
        used = counts(decode(sample_dir, gpu))
    finally:
        gpu.close()
    assert used["gpu_hw"] == len(list(sample_dir.rglob("*.jpg"))), used


@pytest.mark.parametrize("share", [0.5, None])
def test_hybrid_batches_split_between_gpu_and_cpu(sample_dir: Path, share: float | None) -> None:
    hybrid = GpuDecoder(0, share=share, library=libraries("auto")[0], threads=4)
    if share is None:  # tuned, from a half share and judged on each batch: the sample is 3 batches
        hybrid.tuner = ShareTuner(share=0.5, hold=1)
        hybrid.share = hybrid.tuner.share
    try:
        cpu, mixed = decode(sample_dir, None), decode(sample_dir, hybrid)
    finally:
        hybrid.close()
    assert [b.keys for b in mixed] == [b.keys for b in cpu] and [b.errors for b in mixed] == [b.errors for b in cpu]
    used = counts(mixed)
    assert on_gpu(used) > 0 and used["cpu"] > 0
    if share is not None:
        assert used["cpu"] == sum(len(b.keys) - round(len(b.keys) * 0.5) for b in cpu)
    else:  # tuned on the measured rates
        assert sum(map(len, hybrid.tuner.rates.values())) > 0 and 0.0 <= hybrid.share <= 1.0
    assert default_workers(16, hybrid) == 17  # the CPU workers decode too: one per core, plus one
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
