"""GPU decode, the parts that need no GPU: choosing the decode mode (and its exit-2 errors, for real
through the command line), the summary's per-decoder counts, and which bytes nvJPEG may take: the
header check agrees with Pillow on orientation and routes everything else to the CPU path.
The GPU side (tensors against the CPU path, bad images inside a GPU batch) is tests/gpu/test_decode_on_gpu.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from batchscore import gpudecode, hwjpeg
from batchscore.config import ConfigError, job_from_dict
from batchscore.gpudecode import ShareTuner, choose_decode, gpu_route, resize_crop_normalise
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
    (["--backend", "torch", "--decode", "hybrid"], "no GPU is visible"),
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
        choose_decode("hybrid", "torch", "nvimgcodec")
    assert choose_decode("auto", "tensorrt")[0] == "cpu"


@pytest.mark.parametrize("best", [0.6, 1.0, 0.2, 0.0])
@pytest.mark.parametrize("ahead", [0, 3])
def test_hybrid_share_settles_at_the_fastest_split(best: float, ahead: int) -> None:
    """The decode rate as a function of the share, peaked at `best` (1.0: the GPU alone is fastest), with some
    noise; `ahead` batches decode ahead, so each rate the tuner gets is that of a batch started earlier."""
    tuner, noise = ShareTuner(), np.random.default_rng(0)
    rate = lambda share: 5000 - 4000 * abs(share - best) + noise.uniform(-100, 100)  # noqa: E731
    in_flight = [tuner.share] * ahead
    shares = []
    for _ in range(200):
        in_flight.append(tuner.share)
        started = in_flight.pop(0)
        shares.append(tuner.update(started, rate(started)))
    assert all(0.0 <= s <= 1.0 for s in shares)
    assert abs(shares[-1] - best) <= 0.05 and len(set(shares[-40:])) == 1, shares  # settled at the peak
    assert tuner.turned == tuner.turns


def test_hybrid_share_judges_each_share_on_its_own_batches() -> None:
    """Rates of batches started with an older share do not move the share being judged."""
    tuner = ShareTuner(share=0.5, step=0.1, hold=2)
    assert [tuner.update(0.5, 1000.0), tuner.update(0.5, 1000.0)] == [0.5, 0.6]  # 0.5 judged on its 2 batches
    assert tuner.update(0.5, 10.0) == 0.6 and tuner.update(0.5, 10.0) == 0.6  # late 0.5 batches: 0.6 unjudged
    assert tuner.update(0.6, 2000.0) == 0.6 and tuner.update(0.6, 2000.0) == 0.7  # 0.6 beat 0.5's last two


def test_cpu_decode_gets_a_worker_per_core_plus_one() -> None:
    assert (gpudecode.default_workers(16, None), gpudecode.default_workers(2, None)) == (17, 3)
    assert gpudecode.default_workers(1, None) == 0  # one core: decode inline in the rank's loop


def test_decode_libraries_are_tried_best_first_and_only_when_installed() -> None:
    installed = gpudecode.libraries("auto")
    assert installed in ([], ["torchvision"], ["nvimgcodec"], ["nvimgcodec", "torchvision"])
    assert gpudecode.libraries("torchvision") == [n for n in installed if n == "torchvision"]


@pytest.mark.parametrize("values,message", [({"decode": "fast"}, "decode must be one of auto, cpu, gpu, hybrid"),
                                            ({"gpu_decode_share": 1.5}, "or a number between 0 and 1"),
                                            ({"gpu_decode_share": "half"}, "gpu_decode_share must be \"auto\""),
                                            ({"gpu_decoder": "pillow"}, "gpu_decoder must be one of auto, "
                                                                        "nvimgcodec, torchvision"),
                                            ({"gpu_decode_threads": 0}, "gpu_decode_threads must be >= 1")])
def test_decode_keys_are_checked(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        job_from_dict({"input": "x", "model": "m.onnx", "output": "o", **values}, Path("/"))
    assert job_from_dict({"input": "x", "model": "m.onnx", "output": "o", "gpu_decode_share": 1},
                         Path("/")).gpu_decode_share == 1.0
    assert job_from_dict({"input": "x", "model": "m.onnx", "output": "o"}, Path("/")).gpu_decode_share == "auto"


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
    pixels = {i: torch.from_numpy(np.asarray(decode(p.read_bytes())).transpose(2, 0, 1).copy())
              for i, p in enumerate(files)}
    assert min(min(t.shape[1:]) for t in pixels.values()) < 256 < max(min(t.shape[1:]) for t in pixels.values())
    out = torch.full((len(files), *spec.shape), float("nan"))
    resize_crop_normalise(out, pixels, spec)
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
    """Stands in for torch's CUDA events (there is no GPU here): records, in order, what ReusedImages asks of
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


class _Image:
    def __init__(self, capacity: int = 100, address: int = 4096, shape: tuple[int, ...] = (2, 3, 3)) -> None:
        self.capacity, self.address, self.shape = capacity, address, shape

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"data": (self.address, False), "shape": self.shape}


def test_reused_images_come_round_after_their_readers_and_fill_their_holes() -> None:
    """A set is handed out again SETS calls later, only after waiting for the event recorded when the next call
    began; where a set never held an image (one not decoded), it takes new images once, then is reused again."""
    torch = _Events()
    sets = gpudecode.ReusedImages(torch, budget=10_000)
    first = [[_Image(), _Image()], [_Image(), None], [_Image(), _Image()]]  # set 1: its second image not decoded
    for images in first:  # the first round has nothing to reuse
        assert sets.take(2, stream=None) is None
        sets.keep(images)
    assert torch.log == [("record", 1), ("record", 2)]  # set 0 freed when set 1 was taken, set 1 when set 2 was
    assert sets.take(2, stream=None) == first[0]
    assert torch.log[-2:] == [("record", 3), ("wait", 1)]
    sets.keep([None, first[0][1]])  # its first image not decoded this time: the set keeps the old buffer
    assert sets.take(2, stream=None) is None  # set 1 has a hole: new images this time
    new = [_Image(), _Image()]
    sets.keep(new)
    assert sets.take(1, stream=None) == first[2][:1]  # a smaller (last) batch takes the set's first images
    sets.keep(first[2][:1])
    assert sets.take(2, stream=None) == first[0]
    sets.keep(first[0])
    assert sets.take(2, stream=None) == new


def test_reused_images_over_the_budget_are_let_go() -> None:
    sets = gpudecode.ReusedImages(_Events(), budget=250)
    assert sets.take(3, stream=None) is None
    images = [_Image(100), _Image(100), _Image(100)]  # 300 bytes: over
    sets.keep(images)
    sets.view(0, images[0], lambda image: "tensor")
    assert sets.sets[0] == [] and sets.views[0] == {}


def test_a_reused_image_keeps_its_tensor_while_its_buffer_stays() -> None:
    """A set's image decoded into again gives back the tensor it was wrapped as, without wrapping it again, while
    the decoder kept its buffer; a moved buffer (a larger image), a new shape or a new image is wrapped anew."""
    sets = gpudecode.ReusedImages(_Events(), budget=10_000)
    wrapped: list[_Image] = []

    def wrap(image: _Image) -> tuple:
        wrapped.append(image)
        return ("tensor", len(wrapped))

    a, b = _Image(address=1000), _Image(address=2000)
    sets.take(2, stream=None)
    sets.keep([a, b])
    first = [sets.view(0, a, wrap), sets.view(1, b, wrap)]
    for _ in range(gpudecode.ReusedImages.SETS - 1):  # the other sets' turns
        sets.take(2, stream=None)
        sets.keep([_Image(), _Image()])
    assert sets.take(2, stream=None) == [a, b]
    b.address, c = 3000, _Image(address=1000)  # the decoder moved b's buffer; c: another image object
    sets.keep([a, b])
    assert sets.view(0, a, wrap) is first[0] and wrapped == [a, b]
    assert sets.view(1, b, wrap) == ("tensor", 3) and wrapped[-1] is b
    assert sets.view(0, c, wrap) == ("tensor", 4)
    a.shape = (4, 3, 3)
    assert sets.view(0, a, wrap) == ("tensor", 5)


class _Buffer:
    def __init__(self, n: int) -> None:
        self.n = n

    def numel(self) -> int:
        return self.n


def test_device_buffers_come_round_grow_and_shrink() -> None:
    """The C API's buffers are taken in turn like reused images (after their event); a short one grows by a
    quarter, and one over the budget shrinks once batches need less than half of it."""
    torch = _Events()
    torch.uint8, torch.empty = "uint8", lambda n, dtype, device: _Buffer(n)
    buffers = gpudecode.DeviceBuffers(torch, device="cuda:0", budget=10_000)
    first = [buffers.take(1000, stream=None) for _ in range(gpudecode.Turns.SETS)]
    assert [b.numel() for b in first] == [1250] * 3
    assert buffers.take(1200, stream=None) is first[0] and torch.log[-2:] == [("record", 3), ("wait", 1)]
    assert buffers.take(1300, stream=None).numel() == 1625  # short: a new one, a quarter larger
    huge = buffers.take(20_000, stream=None)
    assert huge.numel() == 25_000
    for _ in range(gpudecode.Turns.SETS - 1):
        buffers.take(100, stream=None)
    assert buffers.take(13_000, stream=None) is huge  # over the budget, but half of it is still needed
    for _ in range(gpudecode.Turns.SETS - 1):
        buffers.take(100, stream=None)
    assert buffers.take(100, stream=None).numel() == 320  # at least ALIGN bytes, a quarter more


def test_the_c_api_layout_puts_same_sizes_side_by_side_aligned() -> None:
    """Images of one size sit next to each other at a fixed ALIGN-aligned step, so each run is one strided
    tensor; unparsed images (0, 0) take no room."""
    hw = np.array([[2, 3], [0, 0], [5, 7], [2, 3], [1, 1]], dtype=np.uint32)
    offsets, nbytes, runs = hwjpeg.layout(hw)
    assert runs == [(1, 1, [4]), (2, 3, [0, 3]), (5, 7, [2])]
    assert offsets[4] == 0 and (offsets[0], offsets[3], offsets[2]) == (256, 512, 768)
    assert all(offset % hwjpeg.ALIGN == 0 for offset in offsets) and nbytes == 1024


def test_the_c_api_runs_reach_the_resize_as_strided_views_and_give_the_same_rows(sample_dir: Path) -> None:
    """Images laid out as the C API decodes them (HWC, same sizes side by side) reach the resize as one view of
    the buffer a size, no stacked copy, and give exactly the rows that separate images give; an image not
    decoded has no view, and the views left around that hole are stacked."""
    torch = pytest.importorskip("torch")
    pixels = [np.asarray(decode(p.read_bytes())) for p in sorted(sample_dir.rglob("*.jpg"))[:3]]
    hwc = [pixels[k] for k in (0, 1, 0, 2, 0, 1, 0)]
    offsets, nbytes, runs = hwjpeg.layout(np.array([a.shape[:2] for a in hwc], dtype=np.uint32))
    buffer = torch.zeros(nbytes, dtype=torch.uint8)
    for a, offset in zip(hwc, offsets):
        buffer[offset:offset + a.size] = torch.from_numpy(a.reshape(-1))
    ok = np.ones(len(hwc), dtype=bool)
    ok[2] = False
    views = gpudecode.run_views(buffer, offsets, runs, ok)
    assert views[2] is None
    decoded = {i: view for i, view in enumerate(views) if view is not None}
    copies = {i: torch.from_numpy(hwc[i].transpose(2, 0, 1).copy()) for i in decoded}
    for images, same, view in ((decoded, [1, 5], True), (decoded, [3], True), (decoded, [0, 4, 6], False),
                               (copies, [0, 4], False)):
        x = gpudecode.batched([images[i] for i in same])
        assert (x.data_ptr() == images[same[0]].data_ptr()) == view  # the buffer itself, or a copy
        assert torch.equal(x, torch.stack([copies[i] for i in same]))
    spec = Preprocess()
    out_views, out_copies = (torch.full((len(hwc), *spec.shape), float("nan")) for _ in range(2))
    resize_crop_normalise(out_views, decoded, spec)
    resize_crop_normalise(out_copies, copies, spec)
    assert torch.equal(out_views[list(decoded)], out_copies[list(decoded)])
    assert out_views[2].isnan().all()
