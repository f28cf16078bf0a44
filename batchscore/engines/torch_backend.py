"""PyTorch adapter: the same ONNX file run by PyTorch (via onnx2torch), for clusters without TensorRT.

On a GPU the model runs in FP16/BF16 (or FP32 without TF32) in channels-last layout, fed from two
pinned host buffers: batch i+1 is staged and copied in on a copy stream while batch i computes on
the compute stream, and outputs come back asynchronously. In eager and cudagraph modes, convolutions
followed by a ReLU (or by a residual add and a ReLU) run as one cuDNN call each (`fuse_conv_relu`).
Compile modes:

- "eager": plain PyTorch; any batch size up to the job's.
- "cudagraph": eager kernels captured once per buffer set and replayed (short final batch padded).
- "compiled": an AOTInductor package (ONNX conversion, `torch.export` and `aoti_compile_and_package`
  in a child process, aoti_build.py), cached on disk under a key like a TensorRT plan's; one rank per
  node builds, the others wait, and every rank loads it. Loading is one shared library with the
  weights and kernels inside: no ONNX conversion, no Dynamo, no Inductor in the rank's process. It is linked by a compiler that leaves libstdc++ shared (`cxx_compiler`): a
  copy of libstdc++ inside the wrapper made every load crash in `std::regex` (docs/dev/decisions/0010). It is
  also linked with `-Bsymbolic`, as every package measured so far was (the first workaround for that crash).
  Its runs are not captured in CUDA graphs (capture fails inside AOTInductor's runner).

What the engine runs comes from its loader (torch_loaders.py): the converted module, read from the engine
cache after the first start on a node, or the package; activation then only binds the GPU, allocates
buffers, warms up and captures. `torch` is imported with this module, which is imported only when the
torch backend is chosen.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import COMPILE_MODES
from ..model import inspect_model
from . import Engine, EngineError, EngineOptions, Outputs, TopK
from .loaders import Loader
from .torch_fuse import ConvReLU
from .torch_loaders import DTYPES, ModuleForDevice, ModuleFromOnnx, PackageFromOnnx

SLOTS = 2


def softmax_topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(int32 indices, float32 softmax probabilities) of each row's k best classes, best first, equal
    probabilities in class order: what runner.topk gives on the host, computed where the logits are.

    Why on the GPU: on the host it took milliseconds of the rank's loop per large batch, time in which the loop
    holds the interpreter lock that the GPU decoder's thread needs once per image (docs/dev/decisions/0008); a
    stable sort keeps the host's order of ties (and of NaN rows)."""
    prob = torch.softmax(logits.float(), dim=1)
    score, index = torch.sort(prob, dim=1, descending=True, stable=True)
    k = min(k, prob.shape[1])
    return index[:, :k].int(), score[:, :k]


def device_of(options: EngineOptions) -> torch.device:
    """The engine's device: the rank's bound GPU, else the CPU."""
    return torch.device("cuda", options.device) if options.device is not None else torch.device("cpu")


@dataclass
class Slot:
    """One buffer set: pinned host input/outputs, device input, its events (and CUDA graph, if any)."""

    host_in: torch.Tensor
    dev_in: torch.Tensor
    host_out: list[torch.Tensor] = field(default_factory=list)
    host_topk: tuple[torch.Tensor, torch.Tensor] | None = None  # indices and scores (EngineOptions.top_k)
    copy_start: torch.cuda.Event = field(default_factory=lambda: torch.cuda.Event(enable_timing=True))
    copied: torch.cuda.Event = field(default_factory=lambda: torch.cuda.Event(enable_timing=True))
    start: torch.cuda.Event = field(default_factory=lambda: torch.cuda.Event(enable_timing=True))
    end: torch.cuda.Event = field(default_factory=lambda: torch.cuda.Event(enable_timing=True))
    done: torch.cuda.Event = field(default_factory=lambda: torch.cuda.Event(enable_timing=True))
    graph: torch.cuda.CUDAGraph | None = None
    graph_out: tuple[torch.Tensor, ...] = ()
    rows: int = 0


class TorchEngine(Engine):
    name = "torch"
    device_batches = True  # a CUDA tensor (decode/gpu.py) is copied device to device, no host staging

    @staticmethod
    def default_loader(model: Path, options: EngineOptions) -> Loader:
        """The package (compile = "compiled"), else the cached conversion put on the engine's device."""
        device = device_of(options)
        if options.compile == "compiled" and device.type == "cuda":
            return PackageFromOnnx(model, options.batch_size, options.precision, device, options.cache_dir)
        return ModuleForDevice(ModuleFromOnnx(model, options.cache_dir), options.precision, device)

    def _activate(self) -> None:
        o = self.options
        if o.precision not in DTYPES:
            raise EngineError(f"backend 'torch' runs precision fp32, fp16 or bf16, not {o.precision!r}; "
                              "use backend = 'tensorrt' or 'onnxruntime' for int8")
        if o.compile not in COMPILE_MODES:
            raise EngineError(f"compile must be one of {', '.join(COMPILE_MODES)}; got {o.compile!r}")
        self.device = device_of(o)
        if o.threads:  # under mpirun torch starts with one intra-op thread, whatever cores the rank owns
            torch.set_num_threads(o.threads)
        if self.device.type == "cpu" and o.compile != "eager":
            raise EngineError(f"compile = {o.compile!r} needs a GPU and none is bound to this rank; use 'eager'")
        with self._phase("inspect"):
            info = inspect_model(self.model)
        self.input_name, self.input_shape = info.input_name, info.input_shape
        self.output_names = list(info.outputs)
        self.chw = tuple(info.input_shape[1:])
        if len(self.chw) != 3 or not all(isinstance(d, int) for d in self.chw):
            raise EngineError(f"{self.model}: needs fixed C, H, W input dimensions, got {info.input_shape}")
        self.compute_ms = 0.0
        if self.device.type == "cpu":
            with self._phase("load"):
                self.module = self.loader()
            self.device_name = "cpu"
            return
        with self._phase("cuda_init"):
            torch.cuda.set_device(self.device)
            torch.zeros(1, device=self.device)  # creates the CUDA context here, so that this step shows its cost
            self.device_name = f"cuda:{self.device.index} {torch.cuda.get_device_name(self.device)}"
        # cuDNN's heuristics choose the algorithms: its benchmark is paid again on every start, took most of a
        # cached start and gained nothing measurable end to end (docs/dev/decisions/0014)
        torch.backends.cudnn.benchmark = False
        if o.precision == "fp32":  # FP32 means FP32: no TF32 rounding (docs/dev/decisions/0006)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        with self._phase("load"):  # the cached conversion or package; converted or built only on a miss
            self.module = self.loader()
        with self._phase("buffers_capture"):
            self.copy_stream, self.compute_stream = torch.cuda.Stream(), torch.cuda.Stream()
            shape = (o.batch_size, *self.chw)
            self.slots = [Slot(torch.zeros(shape, pin_memory=True), torch.zeros(shape, device=self.device))
                          for _ in range(SLOTS)]
            with torch.inference_mode():
                outs = self.module(self.slots[0].dev_in)  # warm-up; also gives the output shapes
                k = min(o.top_k, outs[0].shape[1]) if outs[0].ndim == 2 else 0  # top-k of (N, classes) only
                for slot in self.slots:
                    slot.host_out = [torch.zeros(t.shape, pin_memory=True) for t in outs]
                    if k:
                        slot.host_topk = (torch.zeros((o.batch_size, k), dtype=torch.int32, pin_memory=True),
                                          torch.zeros((o.batch_size, k), pin_memory=True))
                    if o.compile == "cudagraph":
                        self._capture(slot)
            torch.cuda.synchronize(self.device)
        if getattr(self.loader, "fused", 0):  # the warm-up run has told which chains ran as cuDNN's fused calls
            chains = [m for m in self.module.modules() if isinstance(m, ConvReLU)]
            refused = [m.unfused for m in chains if m.unfused]
            took = sum(m.took for m in chains)
            self.note = f"{took} of {self.loader.fused} convolution+ReLU chains run as cuDNN fused calls" + (
                f"; cuDNN refused {len(refused)} ({refused[0]})" if refused else "")
        self.next = 0

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.start_phases[name] = round(self.start_phases.get(name, 0.0) + time.perf_counter() - start, 3)

    def _capture(self, slot: Slot) -> None:
        """Record the model on this set's device input once; replays then launch it in one call."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.module(slot.dev_in)  # kernels chosen and memory allocated before capture
        torch.cuda.current_stream().wait_stream(side)
        slot.graph = torch.cuda.CUDAGraph()
        # thread_local: the rank's GPU decoder opens and warms up in another thread meanwhile (runner._beside), and
        # CUDA's default (global) mode would fail its allocations, and this capture with them
        with torch.cuda.graph(slot.graph, capture_error_mode="thread_local"):
            slot.graph_out = self.module(slot.dev_in)

    def _run(self, slot: Slot, rows: int) -> tuple[torch.Tensor, ...]:
        if slot.graph is not None:
            slot.graph.replay()
            return slot.graph_out
        # eager runs exactly the rows given; compiled and graphed runs have a static batch (padded)
        return self.module(slot.dev_in if self.options.compile == "compiled" else slot.dev_in[:rows])

    def _submit(self, batch: np.ndarray | torch.Tensor) -> object:
        on_device = isinstance(batch, torch.Tensor)
        if on_device and batch.device != self.device:
            raise EngineError(f"a batch on {batch.device} given to the torch engine on {self.device}")
        if self.device.type == "cpu":
            with torch.inference_mode():
                return [t.numpy() for t in self.module(torch.from_numpy(batch))]
        slot = self.slots[self.next]
        self.next = (self.next + 1) % SLOTS
        n = slot.rows = len(batch)
        if not on_device:
            slot.host_in[:n].copy_(torch.from_numpy(batch))  # multi-threaded copy into page-locked memory
        rows = n if self.options.compile == "eager" else self.options.batch_size
        with torch.inference_mode():
            with torch.cuda.stream(self.copy_stream):
                self.copy_stream.wait_event(slot.done)  # the compute that last read this set is over
                slot.copy_start.record()
                if on_device:  # decoded on this GPU, its GPU work done: copy it in place
                    batch.record_stream(self.copy_stream)  # its memory is not reused before the copy ran
                    slot.dev_in[:n].copy_(batch, non_blocking=True)
                else:
                    slot.dev_in[:rows].copy_(slot.host_in[:rows], non_blocking=True)
                slot.copied.record()
            with torch.cuda.stream(self.compute_stream):
                self.compute_stream.wait_event(slot.copied)
                slot.start.record()
                outs = self._run(slot, rows)
                best = softmax_topk(outs[0][:n], slot.host_topk[0].shape[1]) if slot.host_topk else ()
                slot.end.record()
                for host, out in zip([*slot.host_out, *(slot.host_topk or ())], [*outs, *best]):
                    host[:n].copy_(out[:n], non_blocking=True)
                slot.done.record()
        return slot

    def _collect(self, token: object) -> Outputs:
        if not isinstance(token, Slot):  # CPU: the outputs themselves
            return Outputs(zip(self.output_names, token))
        token.done.synchronize()
        self.h2d_seconds += token.copy_start.elapsed_time(token.copied) / 1e3
        self.compute_ms += token.start.elapsed_time(token.end)
        self.d2h_seconds += token.end.elapsed_time(token.done) / 1e3
        rows = token.rows
        topk = TopK(*(host[:rows].numpy().copy() for host in token.host_topk)) if token.host_topk else None
        return Outputs({name: host[:rows].numpy().copy() for name, host in zip(self.output_names, token.host_out)},
                       topk)

    def _infer(self, batch: np.ndarray) -> Outputs:
        return self._collect(self._submit(batch))

    def _deactivate(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.slots = []
        del self.module
