"""PyTorch adapter: the same ONNX file run by PyTorch (via onnx2torch), for clusters without TensorRT.

On a GPU the model runs in FP16/BF16 (or FP32 without TF32) in channels-last layout, fed from two
pinned host buffers: batch i+1 is staged and copied in on a copy stream while batch i computes on
the compute stream, and outputs come back asynchronously. In eager and cudagraph modes, convolutions
followed by a ReLU (or by a residual add and a ReLU) run as one cuDNN call each (`fuse_conv_relu`).
Compile modes:

- "eager": plain PyTorch; any batch size up to the job's, no start-up cost.
- "cudagraph": eager kernels captured once per buffer set and replayed (short final batch padded).
- "compiled": an AOTInductor package (ONNX conversion, `torch.export` and `aoti_compile_and_package`
  in a child process, aoti_build.py: about a minute), cached on disk under a key like a TensorRT
  plan's; one rank per node builds, the others wait, and every rank loads it. Loading is one shared
  library with the weights and kernels inside, in seconds: no ONNX conversion, no Dynamo, no Inductor
  in the rank's process. It is linked by a compiler that leaves libstdc++ shared (`cxx_compiler`): a
  copy of libstdc++ inside the wrapper made every load crash in `std::regex` (docs/dev/decisions/0010). It is
  also linked with `-Bsymbolic`, as every package measured so far was (the first workaround for that crash).
  Its runs are not captured in CUDA graphs (capture fails inside AOTInductor's runner).

`torch` is imported with this module, which is imported only when the torch backend is chosen.
"""

from __future__ import annotations

import json
import operator
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from ..config import COMPILE_MODES
from ..enginecache import EngineCache, StaleEntry, default_cache_dir
from ..gpu import driver_version
from ..model import inspect_model, model_sha256
from . import TOPK_INDEX, TOPK_SCORE, TORCH_KIND, Compiler, Engine, EngineError, cpu_features, cxx_compiler

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ONNX_DTYPES = {onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.FLOAT16: torch.float16,
               onnx.TensorProto.BFLOAT16: torch.bfloat16}
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                           "QLinearMatMul", "ConvInteger", "MatMulInteger"})
SLOTS = 2
#: Inductor settings of the AOTInductor build (compile = "compiled"): its defaults; max-autotune took several
#: times as long to build (docs/dev/decisions/0010).
AOTI_CONFIGS: dict = {}
#: linker flags of the package's wrapper library: bind its own symbols to itself (docs/dev/decisions/0010)
AOTI_LINK_FLAGS = "-Wl,-Bsymbolic"
#: the folder holding the batchscore package, for the package build's child process
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


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


def cuda_available() -> bool:
    """Whether this PyTorch build sees a usable GPU (the backend choice asks before binding)."""
    return torch.cuda.is_available()


class Wrapped(torch.nn.Module):
    """The converted network behind a float32 NCHW input and float32 outputs, at the run's dtype/layout."""

    def __init__(self, net: torch.nn.Module, dtype: torch.dtype, channels_last: bool) -> None:
        super().__init__()
        self.net, self.dtype, self.channels_last = net, dtype, channels_last

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.net(x)
        return tuple(o.float() for o in (out if isinstance(out, (tuple, list)) else (out,)))


class ConvReLU(torch.nn.Module):
    """relu(conv(x) + z) or relu(conv(x)) as one cuDNN call on a GPU, its bias, sum and ReLU done in the
    convolution's epilogue instead of as separate passes over the activations; plain PyTorch elsewhere, and
    where z is not exactly the convolution's output shape and type (the graph's add would broadcast or cast it)."""

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.conv, self.unfused = conv, ""  # unfused: why cuDNN refused this one (it then runs as before)
        self.took = False  # whether a call ran fused (the engine's log counts them after its warm-up run)

    def _takes(self, x: torch.Tensor, z: torch.Tensor | None) -> bool:
        """Whether the fused call computes what the graph did: on a GPU, z (if any) as the convolution's output."""
        if not x.is_cuda or self.unfused:
            return False
        if z is None:
            return True
        c = self.conv
        size = [(n + 2 * p - d * (k - 1) - 1) // s + 1
                for n, p, d, k, s in zip(x.shape[2:], c.padding, c.dilation, c.kernel_size, c.stride)]
        return z.dtype == x.dtype and tuple(z.shape) == (x.shape[0], c.out_channels, *size)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        c = self.conv
        if self._takes(x, z):
            try:
                out = (torch.ops.aten.cudnn_convolution_relu(x, c.weight, c.bias, c.stride, c.padding, c.dilation,
                                                             c.groups) if z is None else
                       torch.ops.aten.cudnn_convolution_add_relu(x, c.weight, z, 1.0, c.bias, c.stride, c.padding,
                                                                 c.dilation, c.groups))
                self.took = True
                return out
            except RuntimeError as exc:  # no fused kernel for this layer here: the engine's warm-up run finds out
                self.unfused = str(exc).splitlines()[0] or type(exc).__name__
        y = c(x)
        return torch.relu(y if z is None else y + z)


def fuse_conv_relu(net: torch.fx.GraphModule) -> int:
    """Rewrite Conv2d → ReLU and Conv2d → Add → ReLU chains of a converted graph as `ConvReLU` calls; returns
    how many. Only chains whose intermediate results have no other use are taken.

    Why: in PyTorch's eager kernels each convolution's bias is a separate broadcast add over its channels-last
    output, a generic (not vectorised) kernel that took the largest share of ResNet-50's GPU time, with ReLUs and
    residual adds more (docs/dev/decisions/0004)."""
    modules = dict(net.named_modules())

    def module(node: torch.fx.Node) -> torch.nn.Module | None:
        return modules.get(node.target) if node.op == "call_module" else None

    def conv(node: object) -> bool:
        m = module(node) if isinstance(node, torch.fx.Node) else None
        return (isinstance(m, torch.nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str)
                and len(node.args) == 1 and not node.kwargs and len(node.users) == 1)

    def add(node: torch.fx.Node) -> bool:  # onnx2torch's Add, or torch's
        m = module(node)
        return len(node.users) == 1 and len(node.args) == 2 and not node.kwargs and (
            node.op == "call_function" and node.target in (operator.add, torch.add)
            or m is not None and getattr(m, "math_op_function", None) is torch.add
            and getattr(m, "broadcast", None) is None)

    fused = 0
    for relu in list(net.graph.nodes):
        if not (isinstance(module(relu), torch.nn.ReLU) or relu.op == "call_function"
                and relu.target in (torch.relu, torch.nn.functional.relu)) or len(relu.args) != 1:
            continue
        src, z = relu.args[0], None
        if not isinstance(src, torch.fx.Node):
            continue
        chain = [relu, src]
        if add(src):
            first, second = src.args
            if not conv(first):
                first, second = second, first
            src, z = (first, second) if conv(first) and isinstance(second, torch.fx.Node) else (None, None)
            chain.append(src)
        if not conv(src):
            continue
        name = f"fused_{fused}"
        net.add_submodule(name, ConvReLU(modules[src.target]))
        with net.graph.inserting_before(relu):  # after both inputs: z may come after the convolution
            call = net.graph.call_module(name, (src.args[0], *([z] if z is not None else [])))
        relu.replace_all_uses_with(call)
        for node in chain:  # each one's only user is erased before it
            net.graph.erase_node(node)
        fused += 1
    net.graph.lint()
    net.delete_all_unused_submodules()
    net.recompile()
    return fused


def convert(model: Path, dtype: torch.dtype, device: torch.device) -> Wrapped:
    """onnx2torch conversion; a clear EngineError for quantized (Q/DQ INT8) graphs it cannot convert.

    An FP32 graph runs at `dtype`. A graph that already holds FP16/BF16 weights (a precision variant)
    keeps its own types, Casts included: precision lives in the ONNX file, as for TensorRT.
    """
    proto = onnx.load(str(model), load_external_data=False)
    quantized = sorted({n.op_type for n in proto.graph.node} & QUANTIZED_OPS)
    if quantized:
        raise EngineError(f"{model} is a quantized (INT8) model ({', '.join(quantized)}); onnx2torch does not "
                          "convert QuantizeLinear/DequantizeLinear, so backend 'torch' cannot run it. Use "
                          "backend = 'tensorrt' or 'onnxruntime' for INT8, or score the FP32/FP16 model")
    try:
        from onnx2torch import convert as onnx_to_torch
    except ImportError as exc:
        raise EngineError(f"backend 'torch' needs onnx2torch to load ONNX models ({exc}); "
                          "pip install onnx2torch") from None
    try:
        net = onnx_to_torch(str(model))
    except NotImplementedError as exc:
        raise EngineError(f"onnx2torch cannot convert {model}: {exc}") from None
    net = net.eval().to(device=device)
    if {i.data_type for i in proto.graph.initializer} & set(ONNX_DTYPES) - {onnx.TensorProto.FLOAT}:
        dtype = ONNX_DTYPES[proto.graph.input[0].type.tensor_type.elem_type]  # feed the graph's input type
    else:
        net = net.to(dtype=dtype)
    channels_last = device.type == "cuda"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return Wrapped(net, dtype, channels_last).eval()


def build_package(source: Path, path: Path, batch: int, precision: str, device: int | None,
                  link_flags: str = AOTI_LINK_FLAGS, configs: dict | None = None) -> None:
    """The AOTInductor package of `source` (an ONNX model, or a program from `torch.export.save`) at `path`,
    built in a child process (aoti_build.py) whose `CXX` is a compiler wrapper linking with `link_flags`, then
    loaded and run once in a fresh process; a package that fails that check is deleted, not kept."""
    compiler = cxx_compiler()
    with tempfile.TemporaryDirectory(prefix="batchscore-cxx-") as folder:
        env = {**os.environ, "CXX": linking_compiler(compiler, link_flags, Path(folder)),
               "PYTHONPATH": os.pathsep.join(filter(None, (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH"))))}
        proc = subprocess.run([sys.executable, "-m", "batchscore.engines.aoti_build", "build", str(source), str(path),
                               "--batch", str(batch), "--precision", precision,
                               "--device", str(-1 if device is None else device),
                               "--configs", json.dumps(AOTI_CONFIGS if configs is None else configs)],
                              env=env, capture_output=True, text=True)
    if proc.returncode:
        raise EngineError(f"compile = 'compiled': building the AOTInductor package of {source} failed in its "
                          f"child process ({exit_reason(proc.returncode)}); use compile = 'cudagraph' or 'eager' "
                          f"for this model. Compiler: {compiler.path}{'; ' + compiler.note if compiler.note else ''}. "
                          f"Its last output: {proc.stderr.strip()[-1500:]}")


def exit_reason(returncode: int) -> str:
    """A child process's end in words: its exit status, or the signal that killed it (SIGSEGV: a crash)."""
    if returncode >= 0:
        return f"exit {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def linking_compiler(compiler: Compiler, flags: str, folder: Path) -> str:
    """A `g++` in `folder` that runs `compiler`, adding `flags` to shared-library links: Inductor has no setting
    for link flags."""
    if compiler.path is None:
        raise EngineError("compile = 'compiled' builds a C++ library on the first rank of a node and found no C++ "
                          "compiler (g++, or the one CXX names); install one, or use compile = 'cudagraph'")
    wrapper = folder / "g++"  # Inductor knows a GCC by its name
    wrapper.write_text(f'#!/bin/sh\ncase " $* " in *" -shared "*) exec "{compiler.path}" "$@" {flags};; esac\n'
                       f'exec "{compiler.path}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def load_aoti(path: Path, device_index: int) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """The package's model as a function of the input batch, run on the current CUDA stream.

    The C++ loader is called directly where it exists: `aoti_load_package` first compares the package's
    CPU vector ISA with this machine's by compiling and loading probe programs, close to a minute, for a
    model that runs on the GPU (docs/dev/decisions/0010).
    """
    loader_class = getattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader", None)
    if loader_class is None:
        from torch._inductor import aoti_load_package

        compiled = aoti_load_package(str(path), device_index=device_index)
        return lambda x: tuple(compiled(x))
    loader = loader_class(str(path), "model", False, 1, device_index)
    return lambda x: tuple(loader.run([x]))


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
    device_batches = True  # a CUDA tensor (gpudecode.py) is copied device to device, no host staging

    def _activate(self) -> None:
        o = self.options
        if o.precision not in DTYPES:
            raise EngineError(f"backend 'torch' runs precision fp32, fp16 or bf16, not {o.precision!r}; "
                              "use backend = 'tensorrt' or 'onnxruntime' for int8")
        if o.compile not in COMPILE_MODES:
            raise EngineError(f"compile must be one of {', '.join(COMPILE_MODES)}; got {o.compile!r}")
        self.device = torch.device("cuda", o.device) if o.device is not None else torch.device("cpu")
        if o.threads:  # under mpirun torch starts with one intra-op thread, whatever cores the rank owns
            torch.set_num_threads(o.threads)
        if self.device.type == "cpu" and o.compile != "eager":
            raise EngineError(f"compile = {o.compile!r} needs a GPU and none is bound to this rank; use 'eager'")
        self.dtype = DTYPES[o.precision]
        self.start_phases: dict[str, float] = {}  # seconds per activation step: where a slow start goes
        with self._phase("inspect"):
            info = inspect_model(self.model)
        self.input_name, self.input_shape = info.input_name, info.input_shape
        self.output_names = list(info.outputs)
        self.chw = tuple(info.input_shape[1:])
        if len(self.chw) != 3 or not all(isinstance(d, int) for d in self.chw):
            raise EngineError(f"{self.model}: needs fixed C, H, W input dimensions, got {info.input_shape}")
        self.cache_status, self.setup_seconds, self.compute_ms = "none", 0.0, 0.0
        if self.device.type == "cpu":
            with self._phase("convert"):
                self.module = convert(self.model, self.dtype, self.device)
            self.device_name = "cpu"
            return
        with self._phase("cuda_init"):
            torch.cuda.set_device(self.device)
            torch.zeros(1, device=self.device)  # creates the CUDA context here, so that this step shows its cost
            self.device_name = f"cuda:{self.device.index} {torch.cuda.get_device_name(self.device)}"
        torch.backends.cudnn.benchmark = True
        if o.precision == "fp32":  # FP32 means FP32: no TF32 rounding (docs/dev/decisions/0006)
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        fused = 0
        if o.compile == "compiled":
            self.module = self._compiled()
        else:
            with self._phase("convert"):
                self.module = convert(self.model, self.dtype, self.device)
            with self._phase("fuse"):
                fused = fuse_conv_relu(self.module.net) if isinstance(self.module.net, torch.fx.GraphModule) else 0
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
        if fused:  # the warm-up run has told which chains ran as cuDNN's fused calls
            chains = [m for m in self.module.modules() if isinstance(m, ConvReLU)]
            refused = [m.unfused for m in chains if m.unfused]
            took = sum(m.took for m in chains)
            self.note = f"{took} of {fused} convolution+ReLU chains run as cuDNN fused calls" + (
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

    def _compiled(self) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
        """The model as an AOTInductor package for this GPU and software: built once per node, then loaded."""
        with self._phase("key"):
            props = torch.cuda.get_device_properties(self.device)
            key = {"kind": TORCH_KIND, "model_sha256": model_sha256(self.model), "gpu": props.name,
                   "compute_capability": f"{props.major}.{props.minor}", "driver": driver_version(),
                   "torch": torch.__version__, "cuda": torch.version.cuda, "input_shape": list(self.chw),
                   "batch": self.options.batch_size, "precision": self.options.precision,
                   "inductor": AOTI_CONFIGS, "link": AOTI_LINK_FLAGS, "cpu_flags": cpu_features()}

        def build(path: Path) -> None:
            with self._phase("build"):  # ONNX conversion, export and compile, all in a child process
                build_package(self.model, path, self.options.batch_size, self.options.precision, self.device.index)

        def load(path: Path) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
            try:
                return load_aoti(path, self.device.index)
            except RuntimeError as exc:  # another torch's package, or a damaged file
                raise StaleEntry(f"{path}: {exc}") from None

        cache = EngineCache(self.options.cache_dir or default_cache_dir())
        with self._phase("cache"):
            loaded = cache.get(key, build=build, load=load, suffix=".pt2")
        self.cache_status, self.setup_seconds = loaded.status, loaded.seconds
        return loaded.value

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

    def _collect(self, token: object) -> dict[str, np.ndarray]:
        if not isinstance(token, Slot):  # CPU: the outputs themselves
            return dict(zip(self.output_names, token))
        token.done.synchronize()
        self.h2d_seconds += token.copy_start.elapsed_time(token.copied) / 1e3
        self.compute_ms += token.start.elapsed_time(token.end)
        self.d2h_seconds += token.end.elapsed_time(token.done) / 1e3
        outputs = {name: host[:token.rows].numpy().copy() for name, host in zip(self.output_names, token.host_out)}
        if token.host_topk:
            outputs[TOPK_INDEX], outputs[TOPK_SCORE] = (host[:token.rows].numpy().copy() for host in token.host_topk)
        return outputs

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self._collect(self._submit(batch))

    def _deactivate(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.slots = []
        del self.module
