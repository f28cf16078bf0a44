"""nvImageCodec's hardware JPEG decoder, one call a batch through its C API (batchscore/hwjpeg.c, built on first
use with the system's C compiler against the installed package's header, cached like engines).

Why: nvImageCodec's Python `decode` takes the interpreter lock back once per image, so every busy Python thread
of the rank (the read worker, the loop) stretches the call, beside a busy Python thread by orders of magnitude
(docs/dev/decisions/0003). Through ctypes each of a batch's two calls (parse, decode) lets go of the lock once.

The decoder writes into device buffers the caller gives (interleaved RGB, uint8), so nothing is allocated per
image. Where this cannot be built or opened (no compiler, a decoder that does not open), HwJpeg raises, the rank's
log says why, and gpudecode keeps the Python API, as it does with BATCHSCORE_HWJPEG=0 in the environment.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from .enginecache import EngineCache, StaleEntry, default_cache_dir

SOURCE = Path(__file__).with_name("hwjpeg.c")
#: set to "0" to keep the hardware step on nvImageCodec's Python API
OFF = "BATCHSCORE_HWJPEG"
#: the engine-cache kind of the built library
KIND = "hwjpeg"
#: nvimgcodecBackendKind_t's NVIMGCODEC_BACKEND_KIND_HW_GPU_ONLY
HW_GPU_ONLY = 4
#: bytes between the starts of two images in a buffer
ALIGN = 256


def _package() -> tuple[Path, Path, Path]:
    """The installed nvImageCodec's (header folder, libnvimgcodec.so.0, extensions folder)."""
    spec = find_spec("nvidia.nvimgcodec")
    if spec is None or not spec.submodule_search_locations:
        raise OSError("nvidia-nvimgcodec is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    paths = root / "include", root / "libnvimgcodec.so.0", root / "extensions"
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise OSError(f"this nvImageCodec lacks {', '.join(missing)}")
    return paths


def _build(out: Path, include: Path, library: Path, compiler: str) -> None:
    """Compile hwjpeg.c into the shared library `out`; cudaStream_t is the one CUDA type the header needs."""
    with tempfile.TemporaryDirectory() as stub:
        Path(stub, "cuda_runtime_api.h").write_text("typedef struct CUstream_st* cudaStream_t;\n")
        cmd = [compiler, "-O2", "-shared", "-fPIC", "-std=c11", f"-I{stub}", f"-I{include}", str(SOURCE),
               "-o", str(out), str(library), f"-Wl,-rpath,{library.parent}"]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if done.returncode:
            raise OSError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-600:]}")


def _load(path: Path) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise StaleEntry(str(exc)) from exc
    p, i = ctypes.c_void_p, ctypes.c_int
    for name, args in (("hwjpeg_open", [ctypes.POINTER(p), i, i, i, ctypes.c_char_p]), ("hwjpeg_close", [p]),
                       ("hwjpeg_parse", [p, i, ctypes.POINTER(ctypes.c_char_p), p, p]),
                       ("hwjpeg_decode", [p, i, p, p, p, p])):
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = None if name == "hwjpeg_close" else i
    return lib


def library(cache: Path | None = None) -> ctypes.CDLL:
    """hwjpeg.c built for the installed nvImageCodec (once per cache; ranks wait for the one building it)."""
    import nvidia.nvimgcodec  # noqa: F401 - loads libnvimgcodec and the libraries it needs, as the Python API does

    include, lib, _ = _package()
    wanted = os.environ.get("CC") or "cc"
    compiler = shutil.which(wanted) or (None if os.environ.get("CC") else shutil.which("gcc"))
    if compiler is None:
        raise OSError(f"no C compiler ({wanted}; set CC) to build the batched decode call")

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]

    key = {"kind": KIND, "source": digest(SOURCE), "header": digest(include / "nvimgcodec.h"),
           "library": str(lib.resolve()), "compiler": compiler, "machine": platform.machine()}
    return EngineCache(cache or default_cache_dir()).get(key, lambda out: _build(out, include, lib, compiler), _load,
                                                         suffix=".so").value


class HwJpeg:
    """One lane's hardware decoder: `parse` a batch's JPEG bytes, then `decode` them into device buffers."""

    def __init__(self, device: int, threads: int, cache: Path | None = None) -> None:
        self.lib = library(cache)
        self.handle = ctypes.c_void_p()
        extensions = str(_package()[2]).encode()
        status = self.lib.hwjpeg_open(ctypes.byref(self.handle), device, threads, HW_GPU_ONLY, extensions)
        if status:
            step = {1: "creating the nvImageCodec instance", 2: "creating the hardware decoder"}.get(status // 100, "")
            raise RuntimeError(f"{step} failed: nvimgcodecStatus_t {status % 100}")
        self.data: ctypes.Array | None = None  # the bytes the parsed code streams point into

    def close(self) -> None:
        if self.handle:
            self.lib.hwjpeg_close(self.handle)
            self.handle = ctypes.c_void_p()

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

    def decode(self, hw: np.ndarray, buffers: np.ndarray, cuda_stream: int) -> np.ndarray:
        """Decode the last `parse`'s images into `buffers` (device addresses, 0 to skip one), queued on
        `cuda_stream`: True where an image was decoded. The last `parse`'s bytes may be let go after."""
        hw = np.ascontiguousarray(hw, dtype=np.uint32)
        buffers = np.ascontiguousarray(buffers, dtype=np.uintp)
        ok = np.zeros(len(hw), dtype=np.uint8)
        status = self.lib.hwjpeg_decode(self.handle, len(hw), hw.ctypes.data, buffers.ctypes.data, cuda_stream,
                                        ok.ctypes.data)
        self.data = None
        if status:
            raise RuntimeError(f"nvImageCodec's hardware decoder failed the batch: nvimgcodecStatus_t {status}")
        return ok.astype(bool)

    def decode_batch(self, data: list[bytes], buffer_for: Callable[[int], object],
                     cuda_stream: int) -> tuple[np.ndarray, list[tuple[int, int, list[int]]], object, np.ndarray]:
        """`parse`, `layout` and `decode` in one: the images into the device tensor `buffer_for(bytes needed)`
        gives. Returns (byte offsets, runs of same-size images, that buffer, decoded or not per image)."""
        hw = self.parse(data)
        offsets, nbytes, runs = layout(hw)
        buffer = buffer_for(nbytes)
        ok = self.decode(hw, np.where(hw[:, 0] > 0, buffer.data_ptr() + offsets, 0), cuda_stream)
        return offsets, runs, buffer, ok


def decode_one(data: bytes, torch: object) -> tuple[int, int, int]:
    """Decode one JPEG on the current GPU through the C API (batchscore doctor): its (height, width, channels)."""
    decoder = HwJpeg(torch.cuda.current_device(), 1)
    try:
        _, runs, _, ok = decoder.decode_batch(
            [data], lambda nbytes: torch.empty(max(nbytes, ALIGN), dtype=torch.uint8, device="cuda"),
            torch.cuda.current_stream().cuda_stream)
        torch.cuda.synchronize()
    finally:
        decoder.close()
    if not ok[0]:
        raise RuntimeError("the hardware decoder did not decode it")
    return runs[0][0], runs[0][1], 3


def layout(hw: np.ndarray) -> tuple[np.ndarray, int, list[tuple[int, int, list[int]]]]:
    """Where each image goes in one buffer: (byte offsets, bytes in all, runs of same-size images as (height,
    width, indices)). Same sizes sit side by side ALIGN-aligned, so a run is one strided tensor."""
    h, w = hw[:, 0].astype(np.int64), hw[:, 1].astype(np.int64)
    size = -(-(h * w * 3) // ALIGN) * ALIGN
    order = np.lexsort((w, h))
    offsets = np.zeros(len(hw), dtype=np.int64)
    offsets[order] = np.cumsum(size[order]) - size[order]
    runs: list[tuple[int, int, list[int]]] = []
    for i in order.tolist():
        if not size[i]:
            continue
        if runs and runs[-1][:2] == (h[i], w[i]):
            runs[-1][2].append(i)
        else:
            runs.append((int(h[i]), int(w[i]), [i]))
    return offsets, int(size.sum()), runs
