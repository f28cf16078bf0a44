"""GPU decode: each batch's JPEGs are decoded on the rank's GPU, where resize, centre crop and normalisation
run too, so a batch reaches a GPU engine (torch, or TensorRT) without a host copy.

Why: Pillow decodes and resizes a 500×375 JPEG at about 300 images/s per core, far below what a GPU
engine takes (docs/dev/performance.md). Libraries (`gpu_decoder`), best first:
- nvImageCodec: the hardware JPEG decoder of data-centre GPUs that have one (no SM time taken from the engine),
  then its CUDA decoder for what the hardware one refuses;
- nvJPEG through torchvision: the CUDA decoder.
Each rank probes them on its GPU at start and logs which steps work. The tensors follow
batchscore.preprocess step for step (shorter side to `resize` with antialiased bilinear, centre crop,
/255, mean/std, channel order, float32 NCHW); pixels differ slightly, since the IDCT, chroma upsampling
and resize are other implementations (docs/guide/gpus.md gives the measured difference).

Per image, never per batch: bytes that a GPU decoder must not or cannot take go to the CPU path
(`preprocess.preprocess`, on the decode workers), which also names the error of a bad image:
- not a JPEG (PNG, WebP, ...), CMYK/YCCK, RGB-coded, 12-bit, lossless or arithmetic-coded JPEGs;
- an EXIF (or XMP) orientation other than 1 (the CPU path applies it as Pillow does);
- no end-of-image marker (a truncated file, which a GPU decoder may fill silently), too many pixels.
The chain is hardware decoder → CUDA decoder → CPU: an image one step rejects goes to the next, and the
summary counts the images each step handled ("gpu_hw", "gpu", "cpu_fallback"; "failed" when none could).

`decode = "hybrid"` gives the GPU a share of every batch and the CPU workers the rest, at the same time
(more decoders when decode is the bound); `gpu_decode_share = "auto"` tunes that share after every batch
on the measured decode rate (`ShareTuner`). torch and the decode libraries are imported only when a GPU decoder is
opened, so `import batchscore` needs none of them.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING

import numpy as np

from . import hwjpeg
from .comm import log
from .config import ConfigError, Job
from .engines import EngineError
from .gpu import visible_gpu_count
from .pipeline import Batch, Started, cpu_batch, read_ahead_seconds, read_item, start_read_ahead
from .preprocess import DEFAULT_MAX_PIXELS, DecodeError, Preprocess, preprocess
from .sources import Item

if TYPE_CHECKING:
    import torch

#: images per read task of the GPU share: per-image tasks cost more interpreter-lock time than the reads
READ_CHUNK = 16
#: read workers of a rank whose batches all go to a GPU decoder (the workers only read): more of them contend
#: with the decoder thread and the loop for the interpreter lock; two, not one, so that one slow read (a network
#: filesystem) does not stall the decoder (measurements: docs/dev/decisions/0005).
GPU_READ_WORKERS = 2
#: backends whose engines take a batch that is already on the GPU (Engine.device_batches)
GPU_DECODE_BACKENDS = ("torch", "tensorrt")
#: SOF markers nvJPEG decodes (baseline, extended sequential, progressive Huffman); other SOFs go to the CPU.
_SOF_NVJPEG = frozenset({0xC0, 0xC1, 0xC2})
_SOF_OTHER = frozenset({0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_XMP = b"http://ns.adobe.com/xap/1.0/\0"
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(?:="|>)([0-9])')  # as Pillow's getexif() reads it


def libraries(requested: str) -> list[str]:
    """The GPU decode libraries to try for `gpu_decoder`, best first, that are installed here."""
    names = ["nvimgcodec", "torchvision"] if requested == "auto" else [requested]
    modules = {"nvimgcodec": "nvidia.nvimgcodec", "torchvision": "torchvision"}

    def installed(module: str) -> bool:
        try:
            return find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package that is missing or broken
            return False

    return [name for name in names if installed(modules[name])]


def choose_decode(requested: str, backend: str, library: str = "auto") -> tuple[str, str]:
    """Resolve the job's `decode` for `backend` before any work: (mode, reason for the summary).

    "gpu"/"hybrid" that cannot run here raise ConfigError (exit 2) with the fix; "auto" becomes "gpu"
    when a GPU backend will drive a GPU and a GPU decode library (`gpu_decoder`) is installed, else
    "cpu". Each rank still probes the library on its GPU when it opens the decoder (`gpu_decoder`).
    """
    if requested == "cpu":
        return "cpu", "requested in the job"
    why = ""
    if backend not in GPU_DECODE_BACKENDS:
        why = (f"backend {backend!r} is fed host arrays; GPU decode feeds the "
               f"{' and '.join(GPU_DECODE_BACKENDS)} backends")
    elif not visible_gpu_count():
        why = f"no GPU is visible to this process, so the {backend} backend cannot take GPU tensors"
    elif find_spec("torch") is None:
        why = "GPU decode resizes and normalises with PyTorch, which is not installed"
    elif not libraries(library):
        why = (f"no GPU decode library for gpu_decoder = {library!r} is installed: pip install "
               "'nvidia-nvimgcodec-cu13[nvjpeg]' (or -cu12), or the torchvision built for your torch")
    if requested == "auto":
        return ("cpu", f"auto: {why}") if why else ("gpu", f"auto: {backend} backend on a GPU, "
                                                           f"{' or '.join(libraries(library))} installed")
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


class TorchvisionNvjpeg:
    """torchvision's nvJPEG (its CUDA decoder): one batched call, one image at a time when that call fails."""

    def __init__(self, device: torch.device, threads: int) -> None:  # noqa: ARG002 - same signature as NvImageCodec
        import torch
        import torchvision
        from torchvision.io import ImageReadMode, decode_jpeg

        self.torch, self.decode_jpeg, self.rgb, self.device = torch, decode_jpeg, ImageReadMode.RGB, device
        self.label = f"nvJPEG (torchvision {torchvision.__version__})"
        self.steps, self.failed = ["CUDA"], {}

    def prepare(self, data: bytes) -> torch.Tensor:
        """On a worker: the input decode() takes for these bytes."""
        return self.torch.frombuffer(bytearray(data), dtype=self.torch.uint8)

    def decode(self, encoded: list[torch.Tensor], stream: torch.cuda.Stream) -> list[tuple[torch.Tensor | None, str]]:
        """(RGB CHW uint8 image on the GPU or None where nvJPEG rejects it, the decoder's count key) per input."""
        if not encoded:
            return []
        try:
            images = self.decode_jpeg(encoded, mode=self.rgb, device=self.device)
        except (RuntimeError, ValueError):  # one bad image fails the whole call: decode them one by one
            images = [self._one(e) for e in encoded]
        return [(img, "gpu") if img is not None and img.shape[0] == 3 else (None, "") for img in images]

    def close(self) -> None:
        """Nothing to let go of: torchvision's decoder is global."""

    def _one(self, encoded: torch.Tensor) -> torch.Tensor | None:
        try:
            return self.decode_jpeg(encoded, mode=self.rgb, device=self.device)
        except (RuntimeError, ValueError):
            return None

    def probe(self, data: bytes) -> None:
        """Keep the steps that decode `data` (every step, for this library); RuntimeError when none does."""
        images = self.decode([self.prepare(data)] * 2, self.torch.cuda.current_stream(self.device))
        if any(image is None for image, _ in images):
            raise RuntimeError("nvJPEG rejected a valid JPEG")


class Turns:
    """`SETS` outputs of a lane's decode calls, taken in turn: a set is taken again only once nothing reads it.
    Taking the next set records an event on the lane's stream after every kernel that reads the last one (the
    resize), and a set waits for its event before it is reused."""

    SETS = 3  # a lane's batches in flight (decoding, resize queued, and one spare) before a set comes round again

    def __init__(self, torch: object) -> None:
        self.torch = torch
        self.free: list[torch.cuda.Event | None] = [None] * self.SETS
        self.turn = -1

    def next_turn(self, stream: torch.cuda.Stream) -> int:
        """The next set's index, once nothing reads that set."""
        if self.turn >= 0:  # every reader of the last set is queued on `stream` by now
            self.free[self.turn] = self.torch.cuda.Event()
            self.free[self.turn].record(stream)
        self.turn = (self.turn + 1) % self.SETS
        if self.free[self.turn] is not None:
            self.free[self.turn].synchronize()  # long done, normally: SETS - 1 batches ago
        return self.turn


class DeviceBuffers(Turns):
    """A lane's device buffers that the hardware decoder's C API (`hwjpeg`) decodes batches into, in turn."""

    def __init__(self, torch: object, device: torch.device, budget: int = 1 << 30) -> None:
        super().__init__(torch)
        self.device, self.budget = device, budget
        self.buffers: list[torch.Tensor | None] = [None] * self.SETS

    def take(self, nbytes: int, stream: torch.cuda.Stream) -> torch.Tensor:
        """The next buffer, at least `nbytes` long: grown by a quarter when short; one over `budget` bytes (very
        large photos) shrinks again once the batches need less than half of it."""
        turn, torch = self.next_turn(stream), self.torch
        buffer = self.buffers[turn]
        if buffer is None or buffer.numel() < nbytes or buffer.numel() > max(self.budget, 2 * nbytes):
            buffer = self.buffers[turn] = None  # the old one is freed (once its last view is) before the new one
            buffer = self.buffers[turn] = torch.empty(max(nbytes, hwjpeg.ALIGN) * 5 // 4, dtype=torch.uint8,
                                                      device=self.device)
        return buffer


class ReusedImages(Turns):
    """Sets of output images that a lane's nvImageCodec decode calls take in turn (its decode's `images=`), so a
    batch is decoded into the buffers of the batch `SETS` calls before instead of into new ones (where the
    hardware step cannot go through the C API, `hwjpeg`).

    Why: new images are device memory allocated in the decode call and freed when the rank's loop lets go of the
    batch, on the loop's thread, while the engine runs; reusing them saves the decoder thread and the loop that
    work (docs/dev/decisions/0008).

    Where the last decode into a set gave no image (a rejected file), that set decodes into new images next
    time; a set over `budget` bytes (very large photos) is let go, so memory stays bounded. Each set also keeps
    the tensors its images were wrapped as (`view`)."""

    def __init__(self, torch: object, budget: int = 1 << 30) -> None:
        super().__init__(torch)
        self.budget = budget
        self.sets: list[list] = [[] for _ in range(self.SETS)]
        self.views: list[dict[int, tuple]] = [{} for _ in range(self.SETS)]  # position: (image, buffer, tensor)

    def take(self, n: int, stream: torch.cuda.Stream) -> list | None:
        """The next set's first `n` images to decode into, once nothing reads them; None: new images this time."""
        images = self.sets[self.next_turn(stream)][:n]
        return images if len(images) == n and all(image is not None for image in images) else None

    def keep(self, decoded: list) -> None:
        """Keep the images the decode call into the set just taken gave (None where it gave none)."""
        images = self.sets[self.turn]
        images += [None] * (len(decoded) - len(images))
        images[:len(decoded)] = [new if new is not None else old for new, old in zip(decoded, images)]
        if sum(image.capacity for image in images if image is not None) > self.budget:
            self.sets[self.turn], self.views[self.turn] = [], {}

    def view(self, position: int, image: object, wrap: Callable[[object], torch.Tensor]) -> torch.Tensor:
        """`wrap(image)` for the image decoded into the set just taken at `position`: the tensor made last time
        where the decoder gave back the same image with the same buffer (address and shape), else a new one.

        Why: wrapping every image anew and letting go of the tensors after took a noticeable share of the decoder
        thread's time an image, and the loop's thread the time to free them, with the interpreter lock held
        (docs/dev/decisions/0008)."""
        layout = image.__cuda_array_interface__
        buffer = (layout["data"][0], tuple(layout["shape"]))
        images, views = self.sets[self.turn], self.views[self.turn]
        old = views.get(position)
        if old is not None and old[0] is image and old[1] == buffer:
            return old[2]
        tensor = wrap(image)
        if position < len(images) and images[position] is image:  # not in a set let go over the budget
            views[position] = (image, buffer, tensor)
        return tensor


class NvImageCodec:
    """NVIDIA nvImageCodec's chain: the hardware JPEG decoder (GPUs that have one: no SM time taken from the
    engine), then its CUDA decoder (Huffman on CPU threads, the rest on the GPU) for what the hardware one
    refuses; None where both refuse (the CPU path is next). A step is kept only if it decodes the probe image
    on this GPU (some nvImageCodec versions cannot create every decoder on every GPU).

    The hardware step goes through nvImageCodec's C API, a batch a call (`hwjpeg`), into the lane's
    `DeviceBuffers`; where that cannot be built or opened, through the Python API into reused images
    (`ReusedImages`) where this nvImageCodec can (`probe` checks). Either way what `decode` returns is valid
    until Turns.SETS more calls."""

    STEPS = (("gpu_hw", "hardware", "HW_GPU_ONLY"), ("gpu", "CUDA", "HYBRID_CPU_GPU"))

    def __init__(self, device: torch.device, threads: int) -> None:
        import torch
        from nvidia import nvimgcodec

        self.torch, self.nvimgcodec, self.device = torch, nvimgcodec, device
        self.params = nvimgcodec.DecodeParams(apply_exif_orientation=True, color_spec=nvimgcodec.ColorSpec.SRGB,
                                              allow_any_depth=False)
        self.decoders: dict[str, object] = {}
        self.failed: dict[str, str] = {}
        self.reused: ReusedImages | None = None
        self.buffers = DeviceBuffers(torch, device)
        self.threads = max(1, min(threads, (os.cpu_count() or 2) - 1))
        self.api = f"C API off: {hwjpeg.OFF}=0"
        if os.environ.get(hwjpeg.OFF) != "0":
            try:
                self.decoders["gpu_hw"] = hwjpeg.HwJpeg(device.index, self.threads)
                self.api = "hardware step through the C API"
            except (OSError, RuntimeError) as exc:  # no compiler, a failed build or load (CacheError), no decoder
                self.api = f"C API off: {type(exc).__name__}: {exc}"
        for key, label, kind in self.STEPS:
            if key not in self.decoders:
                self._open(key, label, kind)

    def _open(self, key: str, label: str, kind: str) -> None:
        """A step through the Python API; the first decodes into reused images (where `probe` finds it can)."""
        try:
            self.decoders[key] = self.nvimgcodec.Decoder(
                device_id=self.device.index, max_num_cpu_threads=self.threads,
                backends=[self.nvimgcodec.Backend(getattr(self.nvimgcodec.BackendKind, kind))])
            if key == "gpu_hw":
                self.reused = ReusedImages(self.torch)
        except RuntimeError as exc:
            self.failed[label] = str(exc)

    def close(self) -> None:
        """Let go of the C API's decoder (the Python API's go with their objects)."""
        if self.native is not None:
            self.native.close()

    @property
    def label(self) -> str:
        return f"nvImageCodec {getattr(self.nvimgcodec, '__version__', '')} ({self.api})"

    @property
    def native(self) -> hwjpeg.HwJpeg | None:
        """The hardware step's C API, where it is in use."""
        first = self.decoders.get("gpu_hw")
        return first if isinstance(first, hwjpeg.HwJpeg) else None

    @property
    def steps(self) -> list[str]:
        """The working steps, in chain order (those whose decoder was created and, after `probe`, works)."""
        return [label for key, label, _ in self.STEPS if key in self.decoders]

    def prepare(self, data: bytes) -> object:
        """On a worker: what decode() takes, the bytes for the C API (it parses them in the decoder thread, without
        the interpreter lock), else the code stream (headers parsed)."""
        return data if self.native is not None else self.nvimgcodec.CodeStream(data)

    def decode(self, streams: list, stream: torch.cuda.Stream) -> list[tuple[torch.Tensor | None, str]]:
        """(RGB CHW uint8 image on the GPU or None, the step that decoded it) per input, in stream order."""
        out: list[tuple[torch.Tensor | None, str]] = [(None, "")] * len(streams)
        pending = list(range(len(streams)))
        into = self.reused.take(len(streams), stream) if self.reused is not None else None
        wrap = functools.partial(self.wrap, stream=stream)
        for key, decoder in self.decoders.items():
            if not pending:
                break
            if isinstance(decoder, hwjpeg.HwJpeg):
                for i, image in zip(pending, self._batch_call(decoder, [streams[i] for i in pending], stream)):
                    if image is not None:
                        out[i] = (image, key)
                pending = [i for i in pending if out[i][0] is None]
                continue
            codes = streams if self.native is None else self._code_streams(streams, pending)
            given = [i for i in pending if codes[i] is not None]
            try:
                images = decoder.decode([codes[i] for i in given], params=self.params,
                                        cuda_stream=stream.cuda_stream, **({"images": into} if into else {}))
            except RuntimeError:  # the whole call failed: the next step tries every image again
                images = [None] * len(given)
            reused = self.reused if self.reused is not None and len(given) == len(streams) else None
            # a step given every image (the first; a later one when the first call failed): its images are the set's
            if reused is not None:
                reused.keep(images)
            into = None  # later steps decode the few left over into new images
            for i, image in zip(given, images):
                if image is not None:
                    tensor = reused.view(i, image, wrap) if reused is not None else wrap(image)
                    if tensor.shape[0] == 3:
                        out[i] = (tensor, key)
            pending = [i for i in pending if out[i][0] is None]
        return out

    def _code_streams(self, data: list[bytes], indices: list[int]) -> dict[int, object]:
        """Code streams for the Python API's steps, made from the bytes the C API took; None where the headers
        do not parse (the CPU path decides)."""
        codes: dict[int, object] = {}
        for i in indices:
            try:
                codes[i] = self.nvimgcodec.CodeStream(data[i])
            except (RuntimeError, ValueError):
                codes[i] = None
        return codes

    def _batch_call(self, decoder: hwjpeg.HwJpeg, data: list[bytes],
                    stream: torch.cuda.Stream) -> list[torch.Tensor | None]:
        """The hardware step through the C API: the batch parsed, laid out in the lane's next buffer (same sizes
        side by side), decoded there; a CHW view per image (None where it was not decoded)."""
        try:
            offsets, runs, buffer, ok = decoder.decode_batch(data, lambda nbytes: self.buffers.take(nbytes, stream),
                                                             stream.cuda_stream)
        except RuntimeError:  # the whole call failed: the next step tries every image again
            return [None] * len(data)
        return run_views(buffer, offsets, runs, ok)

    def wrap(self, image: object, stream: torch.cuda.Stream) -> torch.Tensor:
        """A decoded image (HWC, on the GPU) as a CHW tensor, no copy: its DLPack capsule, made ready on `stream`.

        Why not torch.as_tensor (the CUDA array interface): about twice the time per image, side by side; nor
        torch.from_dlpack(image), which first tries keywords nvImageCodec does not take, catching a TypeError each
        time (docs/dev/decisions/0008)."""
        return self.torch.from_dlpack(image.__dlpack__(stream=stream.cuda_stream)).permute(2, 0, 1)

    def probe(self, data: bytes) -> None:
        """Keep the steps that decode `data` (a 64×64 JPEG) right here; RuntimeError when none does. A C API that
        does not decode it gives the hardware step back to the Python API."""
        stream, failed = self.torch.cuda.current_stream(self.device), self.failed
        native = self.native
        if native is not None and not self._decodes(native, data, stream):
            native.close()
            self.api = "C API off: it did not decode a 64×64 JPEG"
            del self.decoders["gpu_hw"]
            self._open("gpu_hw", "hardware", "HW_GPU_ONLY")
            self.decoders = {key: self.decoders[key] for key, _, _ in self.STEPS if key in self.decoders}
        for key, label, _ in self.STEPS:
            decoder = self.decoders.get(key)
            if decoder is None or decoder is native:
                continue
            try:
                ok = self._decodes(decoder, data, stream)
            except RuntimeError as exc:
                ok, failed[label] = False, str(exc)
            if not ok:
                failed.setdefault(label, "no image decoded")
                del self.decoders[key]
                if key == "gpu_hw":
                    self.reused = None
        if not self.decoders:
            raise RuntimeError("; ".join(f"{label}: {why}" for label, why in failed.items()))
        if self.reused is not None:
            first = self.decoders["gpu_hw"]
            images = first.decode([self.nvimgcodec.CodeStream(data)], params=self.params,
                                  cuda_stream=stream.cuda_stream)
            try:  # decoding into given images: not in every nvImageCodec that setup.cfg allows
                first.decode([self.nvimgcodec.CodeStream(data)], params=self.params, cuda_stream=stream.cuda_stream,
                             images=images)
            except TypeError:
                self.reused = None

    def _decodes(self, decoder: object, data: bytes, stream: torch.cuda.Stream) -> bool:
        """Whether one step alone decodes `data`, twice in one call, to 64×64 RGB."""
        if isinstance(decoder, hwjpeg.HwJpeg):
            return all(image is not None and tuple(image.shape) == (3, 64, 64)
                       for image in self._batch_call(decoder, [data, data], stream))
        images = decoder.decode([self.nvimgcodec.CodeStream(data)] * 2, params=self.params,
                                cuda_stream=stream.cuda_stream)
        return all(image is not None and tuple(image.shape) == (64, 64, 3) for image in images)


LIBRARIES = {"nvimgcodec": NvImageCodec, "torchvision": TorchvisionNvjpeg}


@dataclass
class Queued:
    """A batch's GPU work left queued on its lane's stream when the lane hands the batch over: the event that work
    records, and the decoded images it still reads (the decode library's own buffers, kept alive until then).

    Why not synchronize in the lane: that held the lane's thread until its resize kernels had run, instead of
    starting on the next batch; handing over queued work was faster, decode only and end to end
    (docs/dev/decisions/0008)."""

    done: torch.cuda.Event
    images: dict[int, torch.Tensor]


@dataclass
class Lane:
    """One decoder thread: its own instance of the library, CUDA stream and thread."""

    lib: TorchvisionNvjpeg | NvImageCodec
    stream: torch.cuda.Stream
    thread: ThreadPoolExecutor


class GpuDecoder:
    """One rank's GPU decoder: a library's decode steps and the tensor steps on `device`, in `lanes` threads
    (each with its CUDA stream) of their own, so batch i+1 decodes while the engine runs batch i. A lane hands a
    batch over with its resize still queued on the GPU (`Queued`) and starts on its next batch; with two lanes,
    two batches' host-side work also overlaps (batches take turns).

    share: the GPU's part of each batch (1.0 for decode = "gpu"), the rest going to the CPU workers; None tunes
    it after every batch on the measured decode rate (`ShareTuner`)."""

    def __init__(self, device: int, share: float | None = 1.0, library: str = "torchvision", threads: int = 1,
                 lanes: int = 1) -> None:
        import torch

        self.torch, self.library = torch, library
        self.device = torch.device("cuda", device)
        self.lanes = [Lane(LIBRARIES[library](self.device, threads), torch.cuda.Stream(self.device),
                           ThreadPoolExecutor(1, thread_name_prefix=f"gpu-decode-{n}")) for n in range(lanes)]
        self.lib = self.lanes[0].lib  # the label, steps and `prepare` (which any lane's decode takes)
        self.next = 0
        self.tuner = ShareTuner() if share is None else None
        self.share = self.tuner.share if self.tuner else share
        self.finished = 0.0  # when a lane last handed over a batch (perf_counter)
        self.lock = threading.Lock()  # the tuner and `finished`, updated by every lane

    @property
    def hybrid(self) -> bool:
        """Whether the CPU workers decode a share of each batch too; else they only read for the GPU."""
        return self.tuner is not None or self.share < 1.0

    def close(self) -> None:
        for lane in self.lanes:
            lane.thread.shutdown(wait=True, cancel_futures=True)
            lane.lib.close()

    def probe(self) -> None:
        """Decode a small JPEG on the GPU with each step of each lane's library; RuntimeError when none works."""
        from .doctor.software import tiny_jpeg  # a solid (200, 40, 60) JPEG made in memory

        for lane in self.lanes:
            with self.torch.cuda.device(self.device), self.torch.cuda.stream(lane.stream):
                lane.lib.probe(tiny_jpeg(64))
                images = [image for image, _ in lane.lib.decode([lane.lib.prepare(tiny_jpeg(64))], lane.stream)]
                lane.stream.synchronize()
            means = [image.float().mean(dim=(1, 2)).tolist() for image in images if image is not None]
            if len(means) != 1 or max(abs(a - b) for a, b in zip(means[0], (200, 40, 60))) > 12:
                raise RuntimeError(f"{lane.lib.label} decoded a 64×64 (200, 40, 60) JPEG to channel means {means}")

    def warm_up(self, chunk: Sequence[Item], spec: Preprocess) -> None:
        """Decode and resize `chunk` (the rank's first batch) on each lane, results dropped.

        Why: a decoder's first batch of real images pays its library's and the resize's first-use costs, several
        times a later batch's (docs/dev/decisions/0008); the runner opens the
        decoder beside the engine's activation, so this is paid there instead of in the first batch. Unreadable
        or rejected images are skipped: scoring gives them their errors."""
        encoded = [e for _, e, _, _ in self._read(chunk, range(len(chunk)), spec.max_pixels) if e is not None]
        for lane in self.lanes:
            with self.torch.cuda.device(self.device), self.torch.cuda.stream(lane.stream), self.torch.inference_mode():
                images = lane.lib.decode(encoded, lane.stream)
                out = self.torch.empty((len(encoded), *spec.shape), dtype=self.torch.float32, device=self.device)
                resize_crop_normalise(out, {i: image for i, (image, _) in enumerate(images) if image is not None},
                                      spec)
                lane.stream.synchronize()

    def start_batch(self, chunk: Sequence[Item], spec: Preprocess, executor: Executor,
                    draft: bool = False) -> Started:
        """Start a batch (pipeline.batches calls this): workers read the GPU share's bytes (READ_CHUNK images
        per task; hybrid: in GPU_READ_WORKERS tasks, since its many workers reading at once took the interpreter
        lock from each other, docs/dev/decisions/0007) and decode
        the CPU share; the next lane's thread then decodes on the GPU and assembles the batch there."""
        lane, self.next = self.lanes[self.next], (self.next + 1) % len(self.lanes)
        share = self.share  # read once: a lane's thread may tune it meanwhile
        k = round(len(chunk) * share)
        ahead = start_read_ahead(chunk[:k], executor)  # tar members: the GPU share's spans in large reads
        size = max(READ_CHUNK, -(-k // GPU_READ_WORKERS)) if self.hybrid else READ_CHUNK
        reads = [executor.submit(self._read, chunk, range(i, min(i + size, k)), spec.max_pixels, ahead)
                 for i in range(0, k, size)]
        cpu_finish, cpu_futures = cpu_batch(chunk[k:], spec, executor, draft)
        job = lane.thread.submit(self._decode, lane, chunk, k, reads, cpu_finish, spec, executor, draft, ahead, share)

        def finish() -> Batch:
            batch, queued = job.result()
            queued.done.synchronize()  # the GPU work the lane queued for this batch; the lane has moved on
            return batch

        return finish, [*([ahead] if ahead else []), *reads, *cpu_futures, job]

    def _read(self, items: Sequence[Item], indices: Sequence[int], max_pixels: int,
              ahead: Future | None = None) -> list[tuple[bytes | None, object, str, float]]:
        """On a worker, per item of `items` at `indices`: (bytes, the library's input or None for the CPU path,
        read error, seconds); the bytes from the batch's read-ahead where it holds them."""
        out = []
        for i in indices:
            item = items[i]
            data, error, seconds = read_item(item, ahead, i)
            encoded = None
            if data is not None and not gpu_route(data, max_pixels):
                try:
                    encoded = self.lib.prepare(data)
                except (RuntimeError, ValueError):  # the library refuses the headers: the CPU path decides
                    pass
            out.append((data, encoded, error, seconds))
        return out

    def _decode(self, lane: Lane, chunk: Sequence[Item], k: int, reads: list[Future], cpu_finish: Callable[[], Batch],
                spec: Preprocess, executor: Executor, draft: bool, ahead: Future | None = None,
                started: float = 1.0) -> tuple[Batch, Queued]:
        """On a lane's thread: the whole batch as one tensor on the GPU, bad images set aside, and the GPU work
        still queued for it, which the consumer waits for (the lane goes on to its next batch meanwhile).
        `started`: the share the batch was started with, which the tuner judges."""
        torch = self.torch
        errors, read_s = [""] * k, read_ahead_seconds(ahead)
        to_gpu: dict[int, tuple[bytes, object]] = {}
        fallback: dict[int, Future] = {}
        for i, (data, encoded, error, seconds) in enumerate(r for future in reads for r in future.result()):
            errors[i], read_s = error, read_s + seconds
            if encoded is not None:
                to_gpu[i] = (data, encoded)
            elif data is not None:  # routed to the CPU path: start it now, beside the GPU work
                fallback[i] = executor.submit(_cpu_decode, data, spec, draft)
        start = time.perf_counter()
        counts: dict[str, int] = defaultdict(int)
        with torch.cuda.device(self.device), torch.cuda.stream(lane.stream), torch.inference_mode():
            out = torch.empty((len(chunk), *spec.shape), dtype=torch.float32, device=self.device)
            decoded = {}
            for (i, (data, _)), (image, key) in zip(to_gpu.items(), lane.lib.decode([e for _, e in to_gpu.values()],
                                                                                     lane.stream)):
                if image is None:
                    fallback[i] = executor.submit(_cpu_decode, data, spec, draft)
                else:
                    decoded[i] = image
                    counts[key] += 1
            resize_crop_normalise(out, decoded, spec)
            waited = time.perf_counter()
            for i, future in fallback.items():
                tensor, errors[i] = future.result()
                if tensor is not None:
                    out[i].copy_(torch.from_numpy(tensor))
            cpu = cpu_finish()  # hybrid: the CPU workers' share (none for decode = "gpu")
            waited = time.perf_counter() - waited
            if len(cpu.keys):
                rows = torch.as_tensor(k + np.flatnonzero(cpu.ok), device=self.device)
                out.index_copy_(0, rows, torch.from_numpy(np.ascontiguousarray(cpu.tensors)).to(self.device))
            errors += cpu.errors
            good = np.array([not e for e in errors], dtype=bool)
            tensors = out if good.all() else out[torch.as_tensor(np.flatnonzero(good), device=self.device)]
            queued = Queued(torch.cuda.Event(), decoded)
            queued.done.record(lane.stream)
        gpu_seconds = time.perf_counter() - start - waited  # the thread's own time, its queued GPU work not awaited
        with self.lock:
            now = time.perf_counter()
            if self.tuner and self.finished:
                self.share = self.tuner.update(started, len(chunk) / (now - self.finished))
            self.finished = now
        counts.update(cpu_fallback=len(fallback) - sum(1 for i in fallback if errors[i]),
                      failed=sum(1 for e in errors[:k] if e) + cpu.decoders["failed"], cpu=cpu.decoders["cpu"])
        return Batch([it.key for it in chunk], tensors, errors, read_s + cpu.read_seconds, cpu.decode_seconds,
                     decoders=dict(counts), gpu_seconds=gpu_seconds), queued


class ShareTuner:
    """Hybrid's GPU share, tuned on the decode rate (images/s between the decoder's hand-overs).

    Each share is judged on `hold` batches that were started with it, and on nothing else: with batches decoding
    ahead, the batch handed over now was started with an older share; a tuner that moved every batch on the
    newest hand-over's rate wandered around where it started. This one starts at 1.0 (best on every GPU
    measured), moves by `step` on in the direction that raised the rate, turns back where it fell (or at 0 or 1),
    and after `turns` turns keeps the best share it judged for the rest of the run. Why not a cost model: the CPU
    workers and the decoder thread share one interpreter lock, so adding CPU work slows the GPU part too
    (docs/dev/decisions/0007)."""

    def __init__(self, share: float = 1.0, step: float = 0.05, hold: int = 4, turns: int = 2) -> None:
        self.share, self.step, self.hold, self.turns = share, step, hold, turns
        self.direction, self.turned, self.previous = 1.0, 0, 0.0
        self.rates: dict[float, list[float]] = defaultdict(list)  # per share started with, its batches' rates

    def judged(self, share: float) -> float | None:
        """The mean rate of the last `hold` batches started with `share`; None before there are that many."""
        rates = self.rates.get(round(share, 6), [])
        return float(np.mean(rates[-self.hold:])) if len(rates) >= self.hold else None

    def update(self, started: float, rate: float) -> float:
        """Fold in the rate of a batch just handed over that was started with share `started`; returns the share
        for the next batch to start."""
        self.rates[round(started, 6)].append(rate)
        while self.turned < self.turns and (mean := self.judged(self.share)) is not None:
            if mean < self.previous or self._onward() == self.share:
                self.direction, self.turned = -self.direction, self.turned + 1
            self.previous = mean
            if self.turned >= self.turns:
                self.share = max((s for s in self.rates if self.judged(s) is not None), key=self.judged)
            else:
                self.share = self._onward()  # a share judged before is judged again at once, on its batches so far
        return self.share

    def _onward(self) -> float:
        """The next share in the present direction, within 0 and 1."""
        return min(1.0, max(0.0, round(self.share + self.direction * self.step, 6)))


def default_workers(cores: int, gpu: GpuDecoder | None) -> int:
    """Decode threads for a rank that owns `cores`: cores + 1 when they decode (the +1 covers a thread's lock
    and read stalls, pipeline.py), GPU_READ_WORKERS when a GPU decoder takes every image and they only read."""
    if gpu is not None and not gpu.hybrid:
        return min(GPU_READ_WORKERS, cores + 1)
    return cores + 1 if cores > 1 else 0


def run_views(buffer: torch.Tensor, offsets: np.ndarray, runs: list[tuple[int, int, list[int]]],
              ok: np.ndarray) -> list[torch.Tensor | None]:
    """A CHW view per image of a buffer the C API decoded into (`hwjpeg.layout`'s offsets and runs; HWC pixels);
    None where `ok` says the image was not decoded. A run's views keep its fixed step, which `batched` finds."""
    images: list[torch.Tensor | None] = [None] * len(ok)
    for h, w, run in runs:
        step = int(offsets[run[1]] - offsets[run[0]]) if len(run) > 1 else h * w * 3
        group = buffer.as_strided((len(run), 3, h, w), (step, 1, 3 * w, 3), int(offsets[run[0]]))
        for image, i in zip(group.unbind(), run):
            if ok[i]:
                images[i] = image
    return images


def batched(images: list[torch.Tensor]) -> torch.Tensor:
    """Same-size CHW images as one NCHW tensor: where they are views of one buffer at a fixed step (a run of the
    C API's layout, `run_views`), a strided view of that buffer, else a stack (a copy).

    Why: stacking the C API's views copied every decoded pixel once more before the conversion to float
    (docs/dev/decisions/0008); the conversion reads the view instead."""
    import torch

    first = images[0]
    if len(images) == 1:
        return first.unsqueeze(0)
    start, step = first.storage_offset(), images[1].storage_offset() - first.storage_offset()
    base, stride = first._base, first.stride()
    if base is not None and all(image._base is base and image.stride() == stride
                                and image.storage_offset() == start + n * step for n, image in enumerate(images)):
        return first.as_strided((len(images), *first.shape), (step, *stride), start)
    return torch.stack(images)


def resize_crop_normalise(out: torch.Tensor, decoded: dict[int, torch.Tensor], spec: Preprocess) -> None:
    """Decoded RGB CHW uint8 images into their rows of `out` (on its device): the CPU path's steps. Pure tensor
    code, so it runs (and is tested) on the CPU too; rows not in `decoded` are left for the caller to fill.

    Why it is shaped so: archives hold many image sizes (each sample image has its own), and the resize runs
    once per distinct size, so that per-size work is kept to three kernels (to float, resize, crop into the
    rows) and no host sync; rounding, channel order and normalisation run once over the batch. (Each size used
    to cost nine kernels and a stream sync for its row indices.)"""
    import torch

    if not decoded:
        return
    sizes: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, image in decoded.items():
        sizes[tuple(image.shape[1:])].append(i)
    c = spec.crop
    for (h, w), same in sizes.items():
        new_w, new_h = resized_size(w, h, spec)
        x = batched([decoded[i] for i in same]).to(torch.float32, memory_format=torch.contiguous_format)
        x = torch.nn.functional.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True,
                                            align_corners=False)
        top, left = (new_h - c) // 2, (new_w - c) // 2
        x = x[:, :, top:top + c, left:left + c]
        if len(same) == 1:
            out[same[0]].copy_(x[0])
        elif same == list(range(same[0], same[0] + len(same))):  # rows in order (a batch of one size): no index
            out[same[0]:same[0] + len(same)].copy_(x)
        else:
            out.index_copy_(0, _to_device(torch.tensor(same), out.device), x)
    scale, shift = _affine(out.device, tuple(spec.mean), tuple(spec.std))
    index = None if len(decoded) == len(out) else _to_device(torch.tensor(sorted(decoded)), out.device)
    rows = out if index is None else out.index_select(0, index)
    rows.clamp_(0, 255).round_()  # Pillow's uint8 result
    if spec.channel_order == "BGR":
        rows = rows.flip(1)
    rows.mul_(scale).add_(shift)
    if index is not None:
        out.index_copy_(0, index, rows)
    elif rows is not out:
        out.copy_(rows)


@functools.lru_cache(maxsize=16)
def _affine(device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) from 0-255 values to normalised ones, made on `device` once.

    Why: each torch call of a decoder thread lets go of the interpreter lock and waits to take it back, and these
    were eight calls a batch (docs/dev/decisions/0003). Made synchronously, so no lane's stream reads them
    before they are there."""
    import torch

    scale = torch.tensor([1 / (255 * s) for s in std]).view(1, 3, 1, 1).to(device)
    shift = torch.tensor([-m / s for m, s in zip(mean, std)]).view(1, 3, 1, 1).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return scale, shift


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on `device`, copied without a host sync (through pinned memory on a GPU)."""
    return tensor.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else tensor


@contextmanager
def gpu_decoder(mode: str, job: Job, device: int | None, rank: int, threads: int = 1,
                warm: Sequence[Item] = ()) -> Iterator[GpuDecoder | None]:
    """This rank's GPU decoder for the plan's `mode` (None for "cpu"): the first library of `job.gpu_decoder`'s
    list whose probe decodes on this GPU, each result logged, then warmed up on `warm` (`GpuDecoder.warm_up`).
    When none works: "auto" decodes on the CPU (logged); "gpu"/"hybrid" fail with the fix."""
    if mode == "cpu" or device is None:
        yield None
        return
    opening = time.perf_counter()
    share = (None if job.gpu_decode_share == "auto" else job.gpu_decode_share) if mode == "hybrid" else 1.0
    from .doctor.software import tiny_jpeg

    preprocess(tiny_jpeg(), job.preprocess)  # the CPU path takes rejected files: it must work too
    decoder, failed = None, []
    for library in libraries(job.gpu_decoder):
        try:
            decoder = GpuDecoder(device, share, library, threads, job.gpu_decode_threads)
            decoder.probe()
            break
        except Exception as exc:  # an import, driver or decoder failure: each reads differently
            if decoder is not None:
                decoder.close()
            decoder = None
            failed.append(f"{library} does not work on cuda:{device}: {type(exc).__name__}: {exc}")
    if decoder is None:
        why = "; ".join(failed) or f"no GPU decode library of gpu_decoder = {job.gpu_decoder!r} is installed"
        if job.decode != "auto":
            raise EngineError(f"decode = {job.decode!r}: {why}; set decode = \"cpu\" (or \"auto\")") from None
        log(rank, f"decoders: {why}; Pillow ok -> decoding on the CPU")
        yield None
        return
    warmed = time.perf_counter()
    if warm:
        decoder.warm_up(warm, job.preprocess)
    warmed = time.perf_counter() - warmed
    part = "a share tuned on the decode rate" if share is None else f"{share:.0%}"
    steps = " -> ".join(decoder.lib.steps) + "".join(f"; {k} step off: {v}" for k, v in decoder.lib.failed.items())
    log(rank, f"decoders: {''.join(f + '; ' for f in failed)}{decoder.lib.label} on cuda:{device} ok "
              f"({steps}; {len(decoder.lanes)} decoder thread(s); ready in {time.perf_counter() - opening:.2f} s, of "
              f"which {warmed:.2f} s warming up on {len(warm)} images), "
              f"Pillow ok -> decode = {mode}, {part} of each batch on the GPU, the rest and rejected files on the CPU "
              "workers")
    try:
        yield decoder
    finally:
        decoder.close()
