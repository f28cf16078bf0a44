"""GPU decode, the parts that need no GPU: choosing the decode mode (and its exit-2 errors, for real
through the command line, removed settings included), which bytes nvJPEG may take (the header check agrees with
Pillow on orientation and routes everything else to the CPU path), the C API's buffers and layout, and the tensor
steps on the CPU. The decoder's routing, fallback and counts run against a fake library in
test_gpudecode_fake.py; the GPU side (tensors against the CPU path, bad images inside a GPU batch) is
tests/gpu/test_decode_on_gpu.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from batchscore.config import ConfigError, job_from_dict
from batchscore.decode import gpu as gpudecode
from batchscore.decode import hwjpeg
from batchscore.decode.buffers import DeviceBuffers
from batchscore.decode.gpu import choose_decode
from batchscore.decode.library import Decoded
from batchscore.decode.routing import gpu_route
from batchscore.decode.tensorops import resize_crop_normalise, same_size
from batchscore.preprocess import Preprocess, decode, preprocess
from conftest import batchscore, write_job


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide every GPU (CUDA_VISIBLE_DEVICES=""), so the outcome is the same on any machine."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def jpeg(image: Image.Image, **save: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **save)
    return buf.getvalue()


def exif_block(orientation: int, order: str) -> bytes:
    """An APP1 EXIF payload holding only IFD0's Orientation, little ("II") or big ("MM") endian."""
    e = "little" if order == "II" else "big"
    magic = b"II*\0" if order == "II" else b"MM\0*"
    entry = (0x0112).to_bytes(2, e) + (3).to_bytes(2, e) + (1).to_bytes(4, e) + orientation.to_bytes(2, e) + b"\0\0"
    return b"Exif\0\0" + magic + (8).to_bytes(4, e) + (1).to_bytes(2, e) + entry + (0).to_bytes(4, e)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8))


@pytest.mark.parametrize("args,why", [
    (["--backend", "onnxruntime", "--decode", "gpu"], "GPU decode feeds the torch and tensorrt backends"),
    (["--backend", "torch", "--decode", "gpu"], "no GPU is visible"),
])
def test_gpu_decode_that_cannot_run_fails_at_start_with_exit_2(tmp_path: Path, sample_dir: Path, model: Path,
                                                               no_gpu: None, args: list[str], why: str) -> None:
    job = write_job(tmp_path / "job.toml", input=str(sample_dir), model=str(model), output=str(tmp_path / "out"))
    res = batchscore("score", "--job", str(job), *args)
    assert res.returncode == 2, res.stderr
    assert "cannot run" in res.stderr and why in res.stderr and 'decode = "cpu"' in res.stderr
    assert not (tmp_path / "out" / "scores.h5").exists()


def test_auto_decodes_on_the_cpu_without_a_gpu_and_counts_images_per_decoder(tmp_path: Path, sample_dir: Path,
                                                                             model: Path, no_gpu: None) -> None:
    (tmp_path / "in").mkdir()
    for p in sorted(sample_dir.rglob("*.jpg"))[:10]:
        (tmp_path / "in" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    job = write_job(tmp_path / "job.toml", input=str(tmp_path / "in"), model=str(model),
                    output=str(tmp_path / "out"), backend="onnxruntime", batch_size=4, workers=2)
    res = batchscore("score", "--job", str(job))
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["decode"] == "cpu" and summary["decode_reason"].startswith("auto: backend 'onnxruntime'")
    assert summary["decoders"] == {"cpu": 10, "failed": 1} == summary["per_rank"][0]["decoders"]
    assert "decode: CPU, 2 workers\n" in res.stdout and "11 total, 10 ok, 1 failed" in res.stdout


def test_choose_decode(no_gpu: None) -> None:
    assert choose_decode("cpu", "torch") == ("cpu", "requested in the job")
    mode, reason = choose_decode("auto", "torch")
    assert mode == "cpu" and "no GPU is visible" in reason
    with pytest.raises(ConfigError, match="no GPU is visible to this process, so the tensorrt backend"):
        choose_decode("gpu", "tensorrt")


def test_gpu_decode_without_a_decode_library_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpudecode, "visible_gpu_count", lambda: 1)  # a GPU, as on a GPU node
    monkeypatch.setattr(gpudecode, "find_spec", lambda name: None)  # with neither torch
    with pytest.raises(ConfigError, match="GPU decode resizes and normalises with PyTorch, which is not installed"):
        choose_decode("gpu", "torch")
    monkeypatch.setattr(gpudecode, "find_spec", lambda name: name == "torch" or None)  # nor a decode library
    with pytest.raises(ConfigError, match=r"no GPU decode library for gpu_decoder = 'nvimgcodec' is installed: "
                                          r"pip install 'nvidia-nvimgcodec-cu13\[nvjpeg\]'"):
        choose_decode("gpu", "torch", "nvimgcodec")
    assert choose_decode("auto", "tensorrt")[0] == "cpu"


def test_cpu_decode_gets_a_worker_per_core_plus_one() -> None:
    assert (gpudecode.default_workers(16, False), gpudecode.default_workers(2, False)) == (17, 3)
    assert gpudecode.default_workers(1, False) == 0  # one core: decode inline in the rank's loop
    assert gpudecode.default_workers(16, True) == gpudecode.GPU_READ_WORKERS  # they only read for the GPU


def test_decode_libraries_are_tried_best_first_and_only_when_installed() -> None:
    installed = gpudecode.libraries("auto")
    assert installed in ([], ["torchvision"], ["nvimgcodec"], ["nvimgcodec", "torchvision"])
    assert gpudecode.libraries("torchvision") == [n for n in installed if n == "torchvision"]


@pytest.mark.parametrize("values,message", [({"decode": "fast"}, "decode must be one of auto, cpu, gpu;"),
                                            ({"gpu_decoder": "pillow"}, "gpu_decoder must be one of auto, "
                                                                        "nvimgcodec, torchvision")])
def test_decode_keys_are_checked(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        job_from_dict({"input": "x", "model": "m.onnx", "output": "o", **values}, Path("/"))


@pytest.mark.parametrize("line,message", [
    ("gpu_decode_share = 0.5", 'gpu_decode_share was removed: decode = "gpu" decodes every image on the GPU'),
    ('gpu_decode_share = "auto"', "gpu_decode_share was removed"),
    ("gpu_decode_threads = 2", "gpu_decode_threads was removed: the GPU decoder runs one thread a rank"),
    ('decode = "hybrid"', 'decode = "hybrid" was removed: decode = "gpu" decodes every image on the GPU'),
])
def test_a_removed_setting_fails_at_start_with_one_line_saying_what_instead(tmp_path: Path, sample_dir: Path,
                                                                            model: Path, line: str,
                                                                            message: str) -> None:
    job = write_job(tmp_path / "job.toml", input=str(sample_dir), model=str(model), output=str(tmp_path / "out"))
    job.write_text(job.read_text() + line + "\n")
    res = batchscore("score", "--job", str(job))
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_the_removed_option_fails_with_one_line_saying_what_instead(tmp_path: Path) -> None:
    res = batchscore("score", "--gpu-decode-threads", "2")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["batchscore score: error: gpu_decode_threads was removed: the GPU "
                                               "decoder runs one thread a rank; delete the key"]


def test_sample_jpegs_go_to_the_gpu_and_other_formats_to_the_cpu(sample_dir: Path) -> None:
    files = sorted(sample_dir.rglob("*.jpg")) + sorted(sample_dir.rglob("*.png"))
    routes = {p.suffix: set() for p in files}
    for p in files:
        routes[p.suffix].add(gpu_route(p.read_bytes()))
    assert routes == {".jpg": {""}, ".png": {"not a JPEG"}}  # grayscale JPEGs included: nvJPEG makes RGB


def test_jpeg_kinds_nvjpeg_takes_and_those_it_must_not(photo: Image.Image) -> None:
    assert gpu_route(jpeg(photo)) == ""
    assert gpu_route(jpeg(photo, progressive=True)) == ""
    assert gpu_route(jpeg(photo.convert("L"))) == ""
    assert gpu_route(jpeg(photo) + b"\0" * 64) == ""  # padding after the end marker is harmless
    assert gpu_route(jpeg(photo.convert("CMYK"))) == "4-component JPEG (CMYK or YCCK)"
    assert gpu_route(jpeg(photo, keep_rgb=True)) == "RGB-coded JPEG (not YCbCr)"
    assert gpu_route(jpeg(photo)[:-100]) == "no end-of-image marker (truncated?)"
    assert gpu_route(jpeg(photo), max_pixels=40 * 30 - 1) == "too many pixels"
    sof = jpeg(photo).index(b"\xff\xc0")
    for offset, value in ((11, 0x00), (11, 0x51), (12, 0x03)):  # sampling factors 0 or 5; undefined table 3
        broken = bytearray(jpeg(photo))
        broken[sof + offset] = value
        assert gpu_route(bytes(broken)) == "corrupt JPEG header"
    lossless = jpeg(photo).replace(b"\xff\xc0", b"\xff\xc3", 1)
    assert gpu_route(lossless) == "JPEG process SOF3 (lossless or arithmetic coding)"
    assert gpu_route(b"\xff\xd8\xff\xe0\x00\x10garbage") == "corrupt JPEG header"
    assert gpu_route(b"") == "not a JPEG"
    png = io.BytesIO()
    photo.save(png, "PNG")
    assert gpu_route(png.getvalue()) == "not a JPEG"


@pytest.mark.parametrize("order", ["II", "MM"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_routes_as_pillow_rotates(photo: Image.Image, orientation: int, order: str) -> None:
    data = jpeg(photo, exif=exif_block(orientation, order))
    image = Image.open(io.BytesIO(data))
    assert image.getexif().get(0x0112) == orientation  # Pillow reads the block as written
    turned = ImageOps.exif_transpose(image).tobytes() != Image.open(io.BytesIO(data)).tobytes()
    assert gpu_route(data) == ("EXIF orientation" if orientation != 1 else "")
    assert turned == (orientation != 1)


def test_xmp_orientation_counts_only_without_exif(photo: Image.Image) -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    rotated = jpeg(photo, xmp=xmp)
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(rotated))).size == (30, 40)  # Pillow turns it
    assert gpu_route(rotated) == "EXIF orientation"
    upright = jpeg(photo, xmp=xmp, exif=exif_block(1, "II"))  # EXIF wins over XMP, in Pillow too
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(upright))).size == (40, 30)
    assert gpu_route(upright) == ""


@pytest.mark.parametrize("spec", [Preprocess(), Preprocess(resize=160, crop=128, channel_order="BGR",
                                                             mean=(0.4, 0.45, 0.5), std=(0.2, 0.25, 0.3))])
def test_gpu_tensor_steps_match_the_cpu_path_within_one_level(sample_dir: Path, spec: Preprocess) -> None:
    """The steps after nvJPEG (resize, crop, normalise, channel order), run on the CPU from Pillow's pixels."""
    torch = pytest.importorskip("torch")
    files = sorted(sample_dir.rglob("*.jpg")) + sorted(sample_dir.rglob("*.png"))
    files.append(files[0])  # two images of one size share one resize call, copied into their rows by index
    files.insert(2, files[1])  # two of one size in adjacent rows: copied as one slice
    pixels = [torch.from_numpy(np.asarray(decode(p.read_bytes())).transpose(2, 0, 1).copy()) for p in files]
    assert min(min(t.shape[1:]) for t in pixels) < 256 < max(min(t.shape[1:]) for t in pixels)
    decoded = Decoded(np.array([t.shape[1:] for t in pixels]), np.zeros(len(files), np.int8), images=pixels)
    out = torch.full((len(files), *spec.shape), float("nan"))
    resize_crop_normalise(out, np.arange(len(files)), decoded, spec)
    diff = np.abs(out.numpy() - np.stack([preprocess(p.read_bytes(), spec) for p in files]))
    level = 1 / (255 * min(spec.std))  # one 8-bit step in normalised units
    assert diff.max() <= 1.05 * level and diff.mean() < 0.25 * level


def test_only_engines_that_take_gpu_batches_accept_tensors(model: Path) -> None:
    torch = pytest.importorskip("torch")
    from batchscore.engines import EngineError, EngineOptions, create_engine

    with create_engine("onnxruntime", model, EngineOptions(batch_size=2, threads=1)) as engine:
        with pytest.raises(EngineError, match="expected a float32 NCHW batch"):
            engine.infer(torch.zeros((1, 3, 224, 224)))


class _Events:
    """Stands in for torch's CUDA events (there is no GPU here): records, in order, what DeviceBuffers asks of
    them."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []
        self.made = 0
        events = self

        class Event:
            def __init__(self) -> None:
                events.made += 1
                self.n = events.made

            def record(self, stream: object) -> None:
                events.log.append(("record", self.n))

            def synchronize(self) -> None:
                events.log.append(("wait", self.n))

        self.cuda = type("cuda", (), {"Event": Event})


class _Buffer:
    def __init__(self, n: int) -> None:
        self.n = n

    def numel(self) -> int:
        return self.n


def test_device_buffers_come_round_grow_and_shrink() -> None:
    """The C API's buffers are taken in turn, each after the event recorded when the next one was taken; a short
    one grows by a quarter, and one over the budget shrinks once batches need less than half of it."""
    torch = _Events()
    torch.uint8, torch.empty = "uint8", lambda n, dtype, device: _Buffer(n)
    buffers = DeviceBuffers(torch, device="cuda:0", budget=10_000)
    first = [buffers.take(1000, stream=None) for _ in range(DeviceBuffers.SETS)]
    assert [b.numel() for b in first] == [1250] * 3
    assert buffers.take(1200, stream=None) is first[0] and torch.log[-2:] == [("record", 3), ("wait", 1)]
    assert buffers.take(1300, stream=None).numel() == 1625  # short: a new one, a quarter larger
    huge = buffers.take(20_000, stream=None)
    assert huge.numel() == 25_000
    for _ in range(DeviceBuffers.SETS - 1):
        buffers.take(100, stream=None)
    assert buffers.take(13_000, stream=None) is huge  # over the budget, but half of it is still needed
    for _ in range(DeviceBuffers.SETS - 1):
        buffers.take(100, stream=None)
    assert buffers.take(100, stream=None).numel() == 320  # at least ALIGN bytes, a quarter more


def test_the_c_api_layout_puts_same_sizes_side_by_side_aligned() -> None:
    """Images of one size sit next to each other at a fixed ALIGN-aligned step, so they make one strided tensor;
    unparsed images (0, 0) take no room."""
    hw = np.array([[2, 3], [0, 0], [5, 7], [2, 3], [1, 1]], dtype=np.uint32)
    offsets, nbytes = hwjpeg.layout(hw)
    assert offsets[4] == 0 and (offsets[0], offsets[3], offsets[2]) == (256, 512, 768)
    assert all(offset % hwjpeg.ALIGN == 0 for offset in offsets) and nbytes == 1024


def test_the_c_api_buffer_reaches_the_resize_as_strided_views_and_gives_the_same_rows(sample_dir: Path) -> None:
    """Images laid out as the C API decodes them (one buffer, HWC, same sizes side by side) reach the resize as one
    view of the buffer a size, no stacked copy, and give exactly the rows that separate images give; an image not
    decoded leaves its row alone, and the images of its size around that hole are stacked."""
    torch = pytest.importorskip("torch")
    pixels = [np.asarray(decode(p.read_bytes())) for p in sorted(sample_dir.rglob("*.jpg"))[:3]]
    hwc = [pixels[k] for k in (0, 1, 0, 2, 0, 1, 0)]
    hw = np.array([a.shape[:2] for a in hwc], dtype=np.int64)
    offsets, nbytes = hwjpeg.layout(hw)
    buffer = torch.zeros(nbytes, dtype=torch.uint8)
    for a, offset in zip(hwc, offsets):
        buffer[offset:offset + a.size] = torch.from_numpy(a.reshape(-1).copy())
    step = np.zeros(len(hwc), dtype=np.int8)
    step[2] = -1
    in_buffer = Decoded(hw, step, buffer=buffer, offsets=offsets)
    copies = [torch.from_numpy(a.transpose(2, 0, 1).copy()) for a in hwc]
    separate = Decoded(hw, step, images=copies)
    for same, view in (([1, 5], True), ([3], True), ([0, 4, 6], False)):
        h, w = hw[same[0]]
        x = same_size(in_buffer, np.array(same), int(h), int(w))
        assert (x.data_ptr() == buffer.data_ptr() + offsets[same[0]]) == view  # the buffer itself, or a copy
        assert torch.equal(x, torch.stack([copies[i] for i in same]))
    spec = Preprocess()
    out_views, out_copies = (torch.full((len(hwc), *spec.shape), float("nan")) for _ in range(2))
    rows = np.arange(len(hwc))
    resize_crop_normalise(out_views, rows, in_buffer, spec)
    resize_crop_normalise(out_copies, rows, separate, spec)
    assert torch.equal(out_views[step >= 0], out_copies[step >= 0])
    assert out_views[2].isnan().all()
