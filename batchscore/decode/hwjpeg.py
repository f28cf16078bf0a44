"""nvImageCodec's JPEG decoders, one call a batch through its C API (hwjpeg.c, built when batchscore is installed).

Why: nvImageCodec's Python `decode` takes the interpreter lock back once per image, so every busy Python thread
of the rank (the read worker, the loop) stretches the call (docs/dev/decisions/0003). Through ctypes each of a
batch's calls (parse, decode) lets go of the lock once.

The decoders write into one device buffer the caller gives (interleaved RGB, uint8, the images at `layout`'s
offsets), so nothing is allocated per image. Where the library was not built (no C compiler at install time),
nvImageCodec is missing or of another version, or no decoder opens, HwJpeg raises OSError or RuntimeError with the
reason, and the GPU decoder uses its fallback.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

import numpy as np

#: bytes between the starts of two images in a buffer
ALIGN = 256
#: the C call's steps: (count key, label); the CUDA decoder takes the progressive JPEGs, beside the hardware one,
#: and then what the hardware one failed
STEPS = (("gpu_hw", "hardware"), ("gpu", "CUDA"))


def _package() -> tuple[Path, Path]:
    """The installed nvImageCodec's (libnvimgcodec.so.0, its JPEG extension's shared library)."""
    spec = find_spec("nvidia.nvimgcodec")
    if spec is None or not spec.submodule_search_locations:
        raise OSError("nvidia-nvimgcodec is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    extension = sorted((root / "extensions").glob("libnvjpeg_ext.so*"))
    if not (root / "libnvimgcodec.so.0").exists() or not extension:
        raise OSError(f"this nvImageCodec ({root}) lacks libnvimgcodec.so.0 or extensions/libnvjpeg_ext.so*")
    return root / "libnvimgcodec.so.0", extension[0]


def _built() -> Path:
    """hwjpeg.c as built at install time (setup.py)."""
    spec = find_spec("batchscore.decode._hwjpeg")
    if spec is None or spec.origin is None:
        raise OSError("batchscore was installed without its nvImageCodec C call (no C compiler then); "
                      "reinstall it where `cc` works")
    return Path(spec.origin)


def _version(v: int) -> str:
    return f"{v // 1000}.{v // 100 % 10}.{v % 100}"


def library() -> ctypes.CDLL:
    """The built C call, bound to the installed nvImageCodec, whose major and minor version must be the headers'."""
    _load_nvjpeg()
    path, _ = _package()
    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)  # the C call's nvimgcodec* symbols resolve against it
    lib = ctypes.CDLL(str(_built()))
    p, i, u32 = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_uint32)
    for name, args in (("hwjpeg_versions", [u32, u32]), ("hwjpeg_close", [p]), ("hwjpeg_drop", [p, i]),
                       ("hwjpeg_open", [ctypes.POINTER(p), i, i, ctypes.c_char_p, ctypes.POINTER(i)]),
                       ("hwjpeg_parse", [p, i, ctypes.POINTER(ctypes.c_char_p), p, p]),
                       ("hwjpeg_decode", [p, i, i, p, p, p, p])):
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = None if name in ("hwjpeg_close", "hwjpeg_drop") else i
    header, loaded = ctypes.c_uint32(), ctypes.c_uint32()
    lib.hwjpeg_versions(ctypes.byref(header), ctypes.byref(loaded))
    if header.value // 100 != loaded.value // 100:
        raise OSError(f"the C call was built for nvImageCodec {_version(header.value)}, this is "
                      f"{_version(loaded.value)}: install nvidia-nvimgcodec {_version(header.value)[:-2]}.*")
    lib.version = _version(loaded.value)
    return lib


def _load_nvjpeg() -> None:
    """Load nvJPEG from the nvidia-nvjpeg wheel where installed, so that the JPEG extension finds it.

    Why not import nvImageCodec's Python module, which loads it too: that import also loads its JPEG 2000 and
    TIFF extensions, which log errors where their libraries are not installed."""
    spec = find_spec("nvidia")
    for root in spec.submodule_search_locations if spec and spec.submodule_search_locations else []:
        found = sorted(Path(root).glob("*/lib/libnvjpeg.so.*"))
        if found:
            ctypes.CDLL(str(found[-1]), mode=ctypes.RTLD_GLOBAL)
            return


class HwJpeg:
    """nvImageCodec's hardware and CUDA JPEG decoders on one GPU: `parse` a batch's bytes, then `decode` them with
    a step into one device buffer. `steps`: the indices into STEPS of the decoders that opened."""

    def __init__(self, device: int, threads: int) -> None:
        self.lib = library()
        self.handle = ctypes.c_void_p()
        opened = (ctypes.c_int * len(STEPS))()
        status = self.lib.hwjpeg_open(ctypes.byref(self.handle), device, threads, str(_package()[1]).encode(),
                                      opened)
        if status:
            step = {1: "creating the nvImageCodec instance", 2: "creating its JPEG decoders",
                    3: "loading its JPEG extension", 4: "creating its JPEG extension"}.get(status // 100, "")
            raise RuntimeError(f"{step} failed: nvimgcodecStatus_t {status % 100}")
        self.steps = [k for k in range(len(STEPS)) if not opened[k]]
        self.failed = {STEPS[k][1]: f"nvimgcodecStatus_t {opened[k]}" for k in range(len(STEPS)) if opened[k]}
        self.data: ctypes.Array | None = None  # the bytes the parsed code streams point into

    def close(self) -> None:
        if self.handle:
            self.lib.hwjpeg_close(self.handle)
            self.handle = ctypes.c_void_p()

    def drop(self, step: int, why: str) -> None:
        """Let go of a step's decoder (it did not decode the probe image)."""
        self.lib.hwjpeg_drop(self.handle, step)
        self.steps.remove(step)
        self.failed[STEPS[step][1]] = why

    def parse(self, data: list[bytes]) -> np.ndarray:
        """(height, width) per image as decode gives it (EXIF orientation applied); (0, 0) where unparseable."""
        n = len(data)
        self.data = (ctypes.c_char_p * n)(*data)
        sizes = np.fromiter(map(len, data), dtype=np.uintp, count=n)
        hw = np.zeros((n, 2), dtype=np.uint32)
        status = self.lib.hwjpeg_parse(self.handle, n, self.data, sizes.ctypes.data, hw.ctypes.data)
        if status:
            raise RuntimeError(f"nvImageCodec could not parse the batch: nvimgcodecStatus_t {status}")
        return hw

    def decode(self, hw: np.ndarray, addresses: np.ndarray, cuda_stream: int) -> np.ndarray:
        """Decode the last `parse`'s images with the steps in `steps` to the device `addresses` (0 skips an image),
        queued on `cuda_stream`: the index into STEPS of the step that decoded each image, -1 where none did.
        With both steps, progressive JPEGs (which the hardware decoder refuses) go to the CUDA decoder beside the
        hardware one, and the CUDA decoder then retries what the hardware one failed (hwjpeg.c)."""
        hw = np.ascontiguousarray(hw, dtype=np.uint32)
        addresses = np.ascontiguousarray(addresses, dtype=np.uintp)
        step = np.empty(len(hw), dtype=np.int8)  # the C call sets every entry
        status = self.lib.hwjpeg_decode(self.handle, sum(1 << k for k in self.steps), len(hw), hw.ctypes.data,
                                        addresses.ctypes.data, cuda_stream, step.ctypes.data)
        if status:
            raise RuntimeError(f"nvImageCodec's decoders could not take the batch: nvimgcodecStatus_t {status}")
        return step

    def decode_batch(self, data: list[bytes], buffer_for: Callable[[int], object],
                     cuda_stream: int) -> tuple[object, np.ndarray, np.ndarray, np.ndarray]:
        """Parse the batch, lay it out in the device tensor `buffer_for(bytes needed)` gives, and decode it there.
        Returns (that buffer, byte offsets, (height, width) per image, the index into STEPS of the step that
        decoded each image, -1 where none did)."""
        hw = self.parse(data)
        offsets, nbytes = layout(hw)
        buffer = buffer_for(nbytes)
        step = self.decode(hw, np.where(hw[:, 0] > 0, buffer.data_ptr() + offsets, 0), cuda_stream)
        self.data = None  # the code streams are done with the bytes
        return buffer, offsets, hw.astype(np.int64), step


def decode_one(data: bytes, torch: object) -> tuple[int, int, int]:
    """Decode one JPEG with the hardware step on the current GPU (batchscore doctor): its (height, width,
    channels)."""
    decoder = HwJpeg(torch.cuda.current_device(), 1)
    try:
        if 0 not in decoder.steps:
            raise RuntimeError(f"no hardware decoder here: {decoder.failed[STEPS[0][1]]}")
        decoder.steps = [0]
        _, _, hw, step = decoder.decode_batch(
            [data], lambda nbytes: torch.empty(max(nbytes, ALIGN), dtype=torch.uint8, device="cuda"),
            torch.cuda.current_stream().cuda_stream)
        torch.cuda.synchronize()
    finally:
        decoder.close()
    if step[0] != 0:
        raise RuntimeError("the hardware decoder did not decode it")
    return int(hw[0, 0]), int(hw[0, 1]), 3


def layout(hw: np.ndarray) -> tuple[np.ndarray, int]:
    """Where each image goes in one buffer: (byte offsets, bytes in all). Same sizes sit side by side, each image
    ALIGN-aligned, so the images of one size are evenly spaced and make one strided tensor (`tensorops`)."""
    h, w = hw[:, 0].astype(np.int64), hw[:, 1].astype(np.int64)
    size = -(-(h * w * 3) // ALIGN) * ALIGN
    order = np.lexsort((w, h))
    offsets = np.zeros(len(hw), dtype=np.int64)
    offsets[order] = np.cumsum(size[order]) - size[order]
    return offsets, int(size.sum())
