"""GPU decode: nvJPEG (through torchvision) decodes each batch's JPEGs on the rank's GPU, where resize,
centre crop and normalisation run too, so a batch reaches the torch engine without a host copy.

Why: Pillow decodes and resizes a 500×375 JPEG at about 300 images/s per core, far below what a GPU
engine takes (docs/performance.md). nvJPEG (on A100/H100 its hardware decoder for baseline JPEGs,
CUDA kernels for the rest) lifts that bound. The tensors follow batchscore.preprocess step for step
(shorter side to `resize` with antialiased bilinear, centre crop, /255, mean/std, channel order,
float32 NCHW); pixels differ slightly, since the IDCT, chroma upsampling and resize are other
implementations (docs/performance.md gives the measured difference).

Per image, never per batch: bytes that nvJPEG must not or cannot take go to the CPU path
(`preprocess.preprocess`, on the decode workers), which also names the error of a bad image:
- not a JPEG (PNG, WebP, ...), CMYK/YCCK, RGB-coded, 12-bit, lossless or arithmetic-coded JPEGs;
- an EXIF (or XMP) orientation other than 1: nvJPEG ignores it, the CPU path applies it;
- no end-of-image marker (a truncated file, which a GPU decoder may fill silently), too many pixels.
A batch that nvJPEG rejects as a whole is decoded on the GPU one image at a time; an image it still
rejects goes to the CPU path, which decodes it or sets it aside as an error entry.

`decode = "hybrid"` gives the GPU the first `gpu_decode_share` of every batch and the CPU workers the
rest, at the same time (more decoders when decode is the bound). torch and torchvision are imported
only when a GPU decoder is opened, so `import batchscore` needs neither.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from importlib.util import find_spec
from typing import TYPE_CHECKING

import numpy as np

from .comm import log
from .config import ConfigError, Job
from .engines import EngineError
from .gpu import visible_gpu_count
from .pipeline import Batch, Started, cpu_batch, read_item
from .preprocess import DEFAULT_MAX_PIXELS, DecodeError, Preprocess, preprocess
from .sources import Item

if TYPE_CHECKING:
    import torch

#: SOF markers nvJPEG decodes (baseline, extended sequential, progressive Huffman); other SOFs go to the CPU.
_SOF_NVJPEG = frozenset({0xC0, 0xC1, 0xC2})
_SOF_OTHER = frozenset({0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_XMP = b"http://ns.adobe.com/xap/1.0/\0"
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(?:="|>)([0-9])')  # as Pillow's getexif() reads it


def choose_decode(requested: str, backend: str) -> tuple[str, str]:
    """Resolve the job's `decode` for `backend` before any work: (mode, reason for the summary).

    "gpu"/"hybrid" that cannot run here raise ConfigError (exit 2) with the fix; "auto" becomes "gpu"
    when the torch backend will drive a GPU and torchvision (nvJPEG) is installed, else "cpu". Each
    rank still probes nvJPEG on its GPU when it opens the decoder (`gpu_decoder`).
    """
    if requested == "cpu":
        return "cpu", "requested in the job"
    why = ""
    if backend != "torch":
        why = (f"backend {backend!r} is fed host arrays; GPU decode feeds the torch backend only"
               + (" (nvImageCodec decode for TensorRT is not implemented)" if backend == "tensorrt" else ""))
    elif not visible_gpu_count():
        why = "no GPU is visible to this process, so the torch backend runs on the CPU"
    elif find_spec("torchvision") is None:
        why = "torchvision (which holds the nvJPEG decoder) is not installed: install the build matching torch"
    if requested == "auto":
        return ("cpu", f"auto: {why}") if why else ("gpu", "auto: torch backend on a GPU, torchvision nvJPEG installed")
    if why:
        raise ConfigError(f"decode = {requested!r} cannot run: {why}; set decode = \"cpu\" (or \"auto\")")
    return requested, "requested in the job"


def exif_orientation(tiff: bytes) -> int | None:
    """The Orientation tag (0x0112) of IFD0 of an EXIF block (from its TIFF header on); None if absent."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    ifd = int.from_bytes(tiff[4:8], order)
    for k in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * k:ifd + 14 + 12 * k]
        if len(entry) < 12:
            break
        if int.from_bytes(entry[:2], order) == 0x0112:
            return int.from_bytes(entry[8:10], order)
    return None


def gpu_route(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """"" when nvJPEG may decode `data` to what Pillow gives; else why the CPU path must take it.

    Reads only the JPEG headers (markers up to the first scan), so it costs microseconds.
    """
    if data[:3] != b"\xff\xd8\xff":
        return "not a JPEG"
    pos, frame, orientation, xmp_orientation, adobe_transform = 2, None, None, None, None
    tables: set[int] = set()  # quantization tables defined before the first scan
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return "corrupt JPEG header"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker == 0xDA:  # start of scan: the headers are over
            break
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        body = data[pos + 4:end]
        if marker == 0xE1 and body.startswith(b"Exif\0\0") and orientation is None:
            orientation = exif_orientation(body[6:])
        elif marker == 0xE1 and body.startswith(_XMP) and (match := _XMP_ORIENTATION.search(body)):
            xmp_orientation = int(match[1])
        elif marker == 0xEE and body.startswith(b"Adobe") and len(body) >= 12:
            adobe_transform = body[11]
        elif marker == 0xDB:  # DQT: one or more tables, each (precision << 4 | id) then 64 or 128 bytes
            i = 0
            while i < len(body):
                tables.add(body[i] & 15)
                i += 1 + 64 * (1 + (body[i] >> 4))
        elif marker in _SOF_OTHER:
            return f"JPEG process SOF{marker - 0xC0} (lossless or arithmetic coding)"
        elif marker in _SOF_NVJPEG:
            if len(body) < 6:
                return "corrupt JPEG header"
            frame = (body[0], int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5],
                     [bytes(body[6 + 3 * c:9 + 3 * c]) for c in range(body[5])])
        pos = end
    if frame is None:
        return "corrupt JPEG header"
    precision, height, width, components, specs = frame
    if any(len(c) < 3 or not (1 <= c[1] >> 4 <= 4 and 1 <= c[1] & 15 <= 4) or c[2] not in tables for c in specs):
        return "corrupt JPEG header"  # bad sampling factors or an undefined table: Pillow fails it, nvJPEG may not
    if precision != 8:
        return f"{precision}-bit JPEG"
    if components not in (1, 3):
        return f"{components}-component JPEG (CMYK or YCCK)"
    if components == 3 and (adobe_transform == 0 or bytes(c[0] for c in specs) == b"RGB"):
        return "RGB-coded JPEG (not YCbCr)"
    if width * height > max_pixels:
        return "too many pixels"
    if (orientation if orientation is not None else xmp_orientation) not in (None, 1):
        return "EXIF orientation"
    if not data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9"):
        return "no end-of-image marker (truncated?)"
    return ""


def resized_size(width: int, height: int, spec: Preprocess) -> tuple[int, int]:
    """(width, height) after scaling the shorter side to spec.resize, rounded as the CPU path rounds."""
    scale = spec.resize / min(width, height)
    return max(spec.resize, round(width * scale)), max(spec.resize, round(height * scale))


def _cpu_decode(data: bytes, spec: Preprocess, draft: bool) -> tuple[np.ndarray | None, str]:
    try:
        return preprocess(data, spec, draft=draft), ""
    except DecodeError as exc:
        return None, str(exc)


class GpuDecoder:
    """One rank's GPU decoder: nvJPEG and the tensor steps on `device`, in a thread (and CUDA stream) of
    its own, so batch i+1 decodes while the engine runs batch i. `share` of each batch goes to the GPU
    (1.0 for decode = "gpu"), the rest to the CPU workers."""

    def __init__(self, device: int, share: float = 1.0) -> None:
        import torch
        import torchvision
        from torchvision.io import ImageReadMode, decode_jpeg

        self.torch, self.decode_jpeg, self.rgb = torch, decode_jpeg, ImageReadMode.RGB
        self.version = torchvision.__version__
        self.device = torch.device("cuda", device)
        self.share = share
        self.stream = torch.cuda.Stream(self.device)
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="gpu-decode")

    def close(self) -> None:
        self.thread.shutdown(wait=True, cancel_futures=True)

    def probe(self) -> None:
        """Decode two tiny JPEGs in one nvJPEG call and check the pixels; RuntimeError when that fails."""
        from .doctor import tiny_jpeg  # a 16×16 solid (200, 40, 60) JPEG made in memory

        encoded = self.torch.frombuffer(bytearray(tiny_jpeg()), dtype=self.torch.uint8)
        with self.torch.cuda.device(self.device):
            images = self.decode_jpeg([encoded, encoded], mode=self.rgb, device=self.device)
            self.torch.cuda.synchronize(self.device)
        means = [img.float().mean(dim=(1, 2)).tolist() for img in images]
        if any(tuple(img.shape) != (3, 16, 16) for img in images) or any(
                max(abs(a - b) for a, b in zip(m, (200, 40, 60))) > 12 for m in means):
            raise RuntimeError(f"nvJPEG decoded a 16×16 (200, 40, 60) JPEG to shapes "
                               f"{[tuple(i.shape) for i in images]}, channel means {means}")

    def start_batch(self, chunk: Sequence[Item], spec: Preprocess, executor: Executor,
                    draft: bool = False) -> Started:
        """Start a batch (pipeline.batches calls this): workers read the GPU share's bytes and decode the
        CPU share; the decoder's thread then decodes on the GPU and assembles the batch there."""
        k = round(len(chunk) * self.share)
        reads = [executor.submit(self._read, item, spec.max_pixels) for item in chunk[:k]]
        cpu_finish, cpu_futures = cpu_batch(chunk[k:], spec, executor, draft)
        job = self.thread.submit(self._decode, chunk, reads, cpu_finish, spec, executor, draft)
        return job.result, [*reads, *cpu_futures, job]

    def _read(self, item: Item, max_pixels: int) -> tuple[bytes | None, torch.Tensor | None, str, float]:
        """On a worker: (bytes, the tensor nvJPEG takes or None for the CPU path, read error, seconds)."""
        data, error, seconds = read_item(item)
        if data is None or gpu_route(data, max_pixels):
            return data, None, error, seconds
        return data, self.torch.frombuffer(bytearray(data), dtype=self.torch.uint8), "", seconds

    def _decode(self, chunk: Sequence[Item], reads: list[Future], cpu_finish: Callable[[], Batch], spec: Preprocess,
                executor: Executor, draft: bool) -> Batch:
        """On the decoder's thread: the whole batch as one tensor on the GPU, bad images set aside."""
        torch = self.torch
        k = len(reads)
        errors, read_s = [""] * k, 0.0
        to_gpu: dict[int, tuple[bytes, torch.Tensor]] = {}
        fallback: dict[int, Future] = {}
        for i, future in enumerate(reads):
            data, encoded, errors[i], seconds = future.result()
            read_s += seconds
            if encoded is not None:
                to_gpu[i] = (data, encoded)
            elif data is not None:  # routed to the CPU path: start it now, beside the GPU work
                fallback[i] = executor.submit(_cpu_decode, data, spec, draft)
        start = time.perf_counter()
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream), torch.inference_mode():
            out = torch.empty((len(chunk), *spec.shape), dtype=torch.float32, device=self.device)
            images = self._nvjpeg([encoded for _, encoded in to_gpu.values()])
            decoded = {}
            for (i, (data, _)), image in zip(to_gpu.items(), images):
                if image is None:
                    fallback[i] = executor.submit(_cpu_decode, data, spec, draft)
                else:
                    decoded[i] = image
            resize_crop_normalise(out, decoded, spec)
            for i, future in fallback.items():
                tensor, errors[i] = future.result()
                if tensor is not None:
                    out[i].copy_(torch.from_numpy(tensor))
            gpu_seconds = time.perf_counter() - start
            cpu = cpu_finish()  # hybrid: the CPU workers' share (none for decode = "gpu")
            if len(cpu.keys):
                rows = torch.as_tensor(k + np.flatnonzero(cpu.ok), device=self.device)
                out.index_copy_(0, rows, torch.from_numpy(np.ascontiguousarray(cpu.tensors)).to(self.device))
            errors += cpu.errors
            good = np.array([not e for e in errors], dtype=bool)
            tensors = out if good.all() else out[torch.as_tensor(np.flatnonzero(good), device=self.device)]
            self.stream.synchronize()  # ready for the engine's streams once handed over
        failed = sum(1 for e in errors[:k] if e)
        counts = {"gpu": len(decoded), "cpu_fallback": len(fallback) - sum(1 for i in fallback if errors[i]),
                  "failed": failed + cpu.decoders["failed"], "cpu": cpu.decoders["cpu"]}
        return Batch([it.key for it in chunk], tensors, errors, read_s + cpu.read_seconds,
                     gpu_seconds + cpu.decode_seconds, decoders=counts)

    def _nvjpeg(self, encoded: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """RGB CHW uint8 images on the GPU, None where nvJPEG rejects one; one batched call when all decode."""
        if not encoded:
            return []
        try:
            images = self.decode_jpeg(encoded, mode=self.rgb, device=self.device)
        except (RuntimeError, ValueError):  # one bad image fails the whole call: decode them one by one
            images = [self._one(e) for e in encoded]
        return [img if img is not None and img.shape[0] == 3 else None for img in images]

    def _one(self, encoded: torch.Tensor) -> torch.Tensor | None:
        try:
            return self.decode_jpeg(encoded, mode=self.rgb, device=self.device)
        except (RuntimeError, ValueError):
            return None


def resize_crop_normalise(out: torch.Tensor, decoded: dict[int, torch.Tensor], spec: Preprocess) -> None:
    """Decoded RGB CHW uint8 images into their rows of `out` (on its device): the CPU path's steps, one
    antialiased resize per distinct image size. Pure tensor code, so it runs (and is tested) on the CPU too."""
    import torch

    sizes: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, image in decoded.items():
        sizes[tuple(image.shape[1:])].append(i)
    scale = torch.tensor([1 / (255 * s) for s in spec.std], device=out.device).view(1, 3, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(spec.mean, spec.std)], device=out.device).view(1, 3, 1, 1)
    c = spec.crop
    for (h, w), rows in sizes.items():
        new_w, new_h = resized_size(w, h, spec)
        x = torch.stack([decoded[i] for i in rows]).float()
        x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True,
                                            align_corners=False)
        top, left = (new_h - c) // 2, (new_w - c) // 2
        x = x[:, :, top:top + c, left:left + c].clamp(0, 255).round_()  # Pillow's uint8 result
        if spec.channel_order == "BGR":
            x = x.flip(1)
        out[torch.as_tensor(rows, device=out.device)] = x * scale + shift


@contextmanager
def gpu_decoder(mode: str, job: Job, device: int | None, rank: int) -> Iterator[GpuDecoder | None]:
    """This rank's GPU decoder for the plan's `mode` (None for "cpu"), probed on its GPU and logged.

    When nvJPEG does not work on this GPU: "auto" decodes on the CPU (logged); "gpu"/"hybrid" fail.
    """
    if mode == "cpu" or device is None:
        yield None
        return
    share = job.gpu_decode_share if mode == "hybrid" else 1.0
    from .doctor import tiny_jpeg

    preprocess(tiny_jpeg(), job.preprocess)  # the CPU path takes rejected files: it must work too
    decoder = None
    try:
        decoder = GpuDecoder(device, share)
        decoder.probe()
    except Exception as exc:  # an import, driver or nvJPEG failure: each reads differently
        if decoder is not None:
            decoder.close()
        why = f"nvJPEG does not work on cuda:{device}: {type(exc).__name__}: {exc}"
        if job.decode != "auto":
            raise EngineError(f"decode = {job.decode!r}: {why}; set decode = \"cpu\" (or \"auto\")") from None
        log(rank, f"decoders: {why}; Pillow ok -> decoding on the CPU")
        yield None
        return
    log(rank, f"decoders: nvJPEG (torchvision {decoder.version}) on cuda:{device} ok, Pillow ok -> decode = "
              f"{mode}, {share:.0%} of each batch on the GPU, the rest and rejected files on the CPU workers")
    try:
        yield decoder
    finally:
        decoder.close()
