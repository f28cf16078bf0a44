"""The GPU decoder: each batch's JPEGs decoded on the rank's GPU, where resize, centre crop and normalisation run
too, so a batch reaches a GPU engine (torch, or TensorRT) without a host copy.

Why: Pillow decodes and resizes a 500×375 JPEG at about 300 images/s per core, far below what a GPU engine takes
(docs/dev/performance.md). The rank's read workers read each batch's bytes and route them (`routing`); one decoder
thread of its own decodes the batch with a `library.GpuLibrary` and assembles it on the GPU, so batch i+1 decodes
while the engine runs batch i. The chain is the library's steps → CPU: an image a step rejects goes to the next,
and the summary counts the images each step handled ("gpu_hw", "gpu", "cpu_fallback"; "failed" when none could).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from importlib.util import find_spec

import numpy as np

from ..comm import log
from ..config import ConfigError, Job
from ..gpu import visible_gpu_count
from ..preprocess import DecodeError, Preprocess, preprocess
from ..reading import read_ahead_seconds, read_item, start_read_ahead
from ..sources import Item
from .library import Decoded, GpuDecodeError, GpuLibrary, Waitable
from .probe import PROBE_RGB, tiny_jpeg
from .protocol import Batch, Started
from .routing import gpu_route

#: images per read task: per-image tasks cost more interpreter-lock time than the reads
READ_CHUNK = 16
#: read workers of a rank whose batches go to the GPU decoder (the workers only read): more of them contend with
#: the decoder thread and the loop for the interpreter lock; two, not one, so that one slow read (a network
#: filesystem) does not stall the decoder (measurements: docs/dev/decisions/0005).
GPU_READ_WORKERS = 2
#: backends whose engines take a batch that is already on the GPU (Engine.device_batches)
GPU_DECODE_BACKENDS = ("torch", "tensorrt")
#: gpu_decoder name: the module that must be installed for it
MODULES = {"nvimgcodec": "nvidia.nvimgcodec", "torchvision": "torchvision"}


def libraries(requested: str) -> list[str]:
    """The GPU decode libraries to try for `gpu_decoder`, best first, that are installed here."""
    names = list(MODULES) if requested == "auto" else [requested]

    def installed(module: str) -> bool:
        try:
            return find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package that is missing or broken
            return False

    return [name for name in names if installed(MODULES[name])]


def open_library(name: str, device: int, threads: int) -> GpuLibrary:
    """The named library on GPU `device` (imports torch and the library)."""
    if name == "nvimgcodec":
        from .nvimgcodec import NvImageCodec

        return NvImageCodec(device, threads)
    from .nvjpeg import TorchvisionNvjpeg

    return TorchvisionNvjpeg(device)


def choose_decode(requested: str, backend: str, library: str = "auto") -> tuple[str, str]:
    """Resolve the job's `decode` for `backend` before any work: (mode, reason for the summary).

    "gpu" that cannot run here raises ConfigError (exit 2) with the fix; "auto" becomes "gpu" when a GPU backend
    will drive a GPU and a GPU decode library (`gpu_decoder`) is installed, else "cpu". Each rank still probes
    the library on its GPU when it opens the decoder (`open_gpu_decoder`).
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


def default_workers(cores: int, gpu: bool) -> int:
    """Decode threads for a rank that owns `cores`: cores + 1 when they decode (the +1 covers a thread's lock
    and read stalls, decode/cpu.py), GPU_READ_WORKERS when a GPU decoder takes the images and they only read."""
    if gpu:
        return min(GPU_READ_WORKERS, cores + 1)
    return cores + 1 if cores > 1 else 0


def _cpu_decode(data: bytes, spec: Preprocess, draft: bool) -> tuple[np.ndarray | None, str]:
    try:
        return preprocess(data, spec, draft=draft), ""
    except DecodeError as exc:
        return None, str(exc)


#: one item as a read worker hands it over: (bytes or None, why the CPU path must take it or "", read error, seconds)
Read = tuple[bytes | None, str, str, float]


class GpuDecoder:
    """A `protocol.BatchDecoder` on `lib`: the workers of `executor` read and route each batch's bytes (READ_CHUNK
    images a task), and the decoder's own thread decodes the batch and assembles it on the GPU. It hands a batch
    over with its GPU work still queued (the consumer waits for its event) and starts on its next batch.

    Why not synchronize in the decoder thread: that held it until its resize kernels had run, instead of starting
    on the next batch; handing over queued work was faster, decode only and end to end (docs/dev/decisions/0008).
    """

    def __init__(self, lib: GpuLibrary, spec: Preprocess, executor: Executor, draft: bool = False) -> None:
        self.lib, self.spec, self.executor, self.draft = lib, spec, executor, draft
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="gpu-decode")

    def close(self) -> None:
        self.thread.shutdown(wait=True, cancel_futures=True)

    def start(self, chunk: Sequence[Item]) -> Started:
        ahead = start_read_ahead(chunk, self.executor)  # tar members: the batch's spans in large reads
        reads = [self.executor.submit(self._read, chunk, range(i, min(i + READ_CHUNK, len(chunk))), ahead)
                 for i in range(0, len(chunk), READ_CHUNK)]
        job = self.thread.submit(self._decode, chunk, reads, ahead)

        def finish() -> Batch:
            batch, done, _ = job.result()  # the decoded images stay referenced until their readers are done
            done.synchronize()  # the GPU work queued for this batch; the decoder thread has moved on
            return batch

        return finish, [*([ahead] if ahead else []), *reads, job]

    def _read(self, items: Sequence[Item], indices: Sequence[int], ahead: Future | None = None) -> list[Read]:
        """On a worker: per item at `indices`, its bytes, route, read error and seconds (from the batch's
        read-ahead where it holds them)."""
        out = []
        for i in indices:
            data, error, seconds = read_item(items[i], ahead, i)
            out.append((data, gpu_route(data, self.spec.max_pixels) if data is not None else "", error, seconds))
        return out

    def _decode(self, chunk: Sequence[Item], reads: list[Future],
                ahead: Future | None) -> tuple[Batch, Waitable, Decoded]:
        """On the decoder thread: the whole batch as one tensor on the GPU, bad images set aside."""
        rows: list[Read] = [r for future in reads for r in future.result()]
        data = [r[0] for r in rows]
        errors = [r[2] for r in rows]
        read_s = sum(r[3] for r in rows) + read_ahead_seconds(ahead)
        to_gpu = np.array([i for i, (d, route, _, _) in enumerate(rows) if d is not None and not route], np.int64)
        fallback = {i: self.executor.submit(_cpu_decode, d, self.spec, self.draft)
                    for i, (d, route, _, _) in enumerate(rows) if d is not None and route}  # beside the GPU work
        start = time.perf_counter()
        device = self.lib.device
        with device.active():
            decoded = self.lib.decode([data[i] for i in to_gpu.tolist()])
            for i in to_gpu[~decoded.ok].tolist():
                fallback[i] = self.executor.submit(_cpu_decode, data[i], self.spec, self.draft)
            out = device.empty(len(chunk), self.spec.shape)
            device.fill(out, to_gpu, decoded, self.spec)
            waited = time.perf_counter()
            host = {}
            for i, future in fallback.items():
                tensor, errors[i] = future.result()
                if tensor is not None:
                    host[i] = tensor
            waited = time.perf_counter() - waited
            if host:
                device.put(out, np.fromiter(host, np.int64, len(host)), np.stack(list(host.values())))
            good = np.array([not e for e in errors], dtype=bool)
            tensors = device.select(out, good)
            done = device.record()
        counts = {key: int(np.count_nonzero(decoded.step == k)) for k, key in enumerate(self.lib.keys)}
        counts.update(cpu_fallback=len(host), failed=int((~good).sum()))
        batch = Batch([it.key for it in chunk], tensors, errors, read_s, decoders=counts,
                      gpu_seconds=time.perf_counter() - start - waited)  # its queued GPU work not awaited
        return batch, done, decoded

    def warm_up(self, chunk: Sequence[Item]) -> None:
        """Decode and resize `chunk` (the rank's first batch) here, results dropped.

        Why: a decoder's first batch of real images pays its library's and the resize's first-use costs, several
        times a later batch's (docs/dev/decisions/0008); the runner opens the decoder beside the engine's
        activation, so this is paid there instead of in the first batch. The batch goes through the whole decoder,
        files the GPU does not take through the CPU path too."""
        _, done, _ = self._decode(chunk, [self.executor.submit(self._read, chunk, range(len(chunk)))], None)
        done.synchronize()


def probe(lib: GpuLibrary) -> None:
    """Decode a small JPEG with each step of `lib`, then through its tensor steps; RuntimeError when no step works
    or the pixels come out wrong."""
    lib.probe(tiny_jpeg(64))
    with lib.device.active():
        decoded = lib.decode([tiny_jpeg(64)])
        out = lib.device.empty(1, (3, 64, 64))
        raw = Preprocess(resize=64, crop=64, mean=(0.0, 0.0, 0.0), std=(1 / 255, 1 / 255, 1 / 255))
        lib.device.fill(out, np.zeros(1, np.int64), decoded, raw)
        lib.device.record().synchronize()
    means = [float(out[0, c].mean()) for c in range(3)] if decoded.ok.all() else []
    if len(means) != 3 or max(abs(a - b) for a, b in zip(means, PROBE_RGB)) > 12:
        raise RuntimeError(f"{lib.label} decoded a 64×64 {PROBE_RGB} JPEG to channel means {means}")


@contextmanager
def open_gpu_decoder(mode: str, job: Job, device: int | None, rank: int, threads: int = 1,
                     warm: Sequence[Item] = ()) -> Iterator[GpuLibrary | None]:
    """This rank's GPU library for the plan's `mode` (None for "cpu"): the first library of `job.gpu_decoder`'s
    list whose probe decodes on this GPU, each result logged, then warmed up on `warm`. When none works: "auto"
    decodes on the CPU (logged); "gpu" fails with the fix."""
    if mode == "cpu" or device is None:
        yield None
        return
    opening = time.perf_counter()
    preprocess(tiny_jpeg(), job.preprocess)  # the CPU path takes rejected files: it must work too
    lib, failed = None, []
    for name in libraries(job.gpu_decoder):
        try:
            lib = open_library(name, device, threads)
            probe(lib)
            break
        except Exception as exc:  # an import, build, driver or decoder failure: each reads differently
            if lib is not None:
                lib.close()
            lib = None
            failed.append(f"{name} does not work on cuda:{device}: {type(exc).__name__}: {exc}")
    if lib is None:
        why = "; ".join(failed) or f"no GPU decode library of gpu_decoder = {job.gpu_decoder!r} is installed"
        if job.decode != "auto":
            raise GpuDecodeError(f"decode = {job.decode!r}: {why}; set decode = \"cpu\" (or \"auto\")") from None
        log(rank, f"decoders: {why}; Pillow ok -> decoding on the CPU")
        yield None
        return
    warmed = time.perf_counter()
    if warm:
        with ThreadPoolExecutor(1) as pool, closing(GpuDecoder(lib, job.preprocess, pool, job.decode_draft)) as gpu:
            gpu.warm_up(warm)
    warmed = time.perf_counter() - warmed
    steps = " -> ".join(lib.steps) + "".join(f"; {k} step off: {v}" for k, v in lib.failed.items())
    log(rank, f"decoders: {''.join(f + '; ' for f in failed)}{lib.label} on cuda:{device} ok ({steps}; ready in "
              f"{time.perf_counter() - opening:.2f} s, of which {warmed:.2f} s warming up on {len(warm)} images), "
              "Pillow ok -> decode = gpu, rejected files on the CPU workers")
    try:
        yield lib
    finally:
        lib.close()
