"""The torch backend's loaders: the converted module (cached) and the AOTInductor package (cached).

`ModuleFromOnnx` converts the ONNX file with onnx2torch, the slow part of a torch engine's start (seconds
for a ResNet-50), and keeps the converted module in the engine cache (`torch.save`), keyed by the model's
hash and the torch and onnx2torch versions: a later start on the node reads it instead of converting.
`ModuleForDevice` puts a converted module on the engine's device at its precision and layout (and fuses
convolution+ReLU chains on a GPU). `PackageFromOnnx` is compile = "compiled": an AOTInductor package built in
a child process (aoti_build.py) and cached under a key like a TensorRT plan's.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from ..enginecache import StaleEntry
from ..gpu import driver_version
from ..model import inspect_model, model_sha256
from . import TORCH_KIND, TORCH_MODULE_KIND, EngineError
from .loaders import CachedLoader, Loader
from .toolchain import Compiler, cpu_features, cxx_compiler
from .torch_fuse import fuse_conv_relu

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ONNX_DTYPES = {onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.FLOAT16: torch.float16,
               onnx.TensorProto.BFLOAT16: torch.bfloat16}
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                           "QLinearMatMul", "ConvInteger", "MatMulInteger"})
#: Inductor settings of the AOTInductor build (compile = "compiled"): its defaults; max-autotune took several
#: times as long to build (docs/dev/decisions/0010).
AOTI_CONFIGS: dict = {}
#: linker flags of the package's wrapper library: bind its own symbols to itself (docs/dev/decisions/0010)
AOTI_LINK_FLAGS = "-Wl,-Bsymbolic"
#: the folder holding the batchscore package, for the package build's child process
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
Compiled = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


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


@dataclass
class Converted:
    """An ONNX model converted by onnx2torch, on the CPU as converted, and the type its graph itself holds
    (FP16/BF16 for a precision variant, which then keeps its own types; None: an FP32 graph)."""

    net: torch.nn.Module
    graph_dtype: torch.dtype | None


def convert_onnx(model: Path) -> Converted:
    """onnx2torch conversion; a clear EngineError for quantized (Q/DQ INT8) graphs it cannot convert."""
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
    reduced = {i.data_type for i in proto.graph.initializer} & set(ONNX_DTYPES) - {onnx.TensorProto.FLOAT}
    graph_dtype = ONNX_DTYPES[proto.graph.input[0].type.tensor_type.elem_type] if reduced else None
    return Converted(inlined(net.eval()), graph_dtype)


def inlined(net: torch.fx.GraphModule) -> torch.nn.Module:
    """The converted graph traced again through onnx2torch's own modules, so that only torch's remain (their
    operations inlined, the same computation); `net` itself where that fails or onnx2torch is still referenced.

    Why: a saved module that holds onnx2torch's classes imports onnx2torch (and the torchvision it imports) when
    it is read, which took longer than reading the module; a module of torch's own classes reads without it."""
    try:
        flat = torch.fx.symbolic_trace(net)
    except Exception:  # noqa: BLE001 - tracing any onnx2torch module may fail in its own way: keep the original
        return net
    used = [type(m).__module__ for m in flat.modules()] + [
        getattr(n.target, "__module__", "") or "" for n in flat.graph.nodes if n.op == "call_function"]
    return net if any(name.startswith("onnx2torch") for name in used) else flat.eval()


def on_device(converted: Converted, dtype: torch.dtype, device: torch.device) -> Wrapped:
    """The converted network on `device`: an FP32 graph at `dtype`, a graph with FP16/BF16 weights at its own types
    (Casts included: precision lives in the ONNX file, as for TensorRT); channels-last on a GPU."""
    net = converted.net.to(device=device)
    if converted.graph_dtype is not None:
        dtype = converted.graph_dtype  # feed the graph's input type
    else:
        net = net.to(dtype=dtype)
    channels_last = device.type == "cuda"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return Wrapped(net, dtype, channels_last).eval()


def convert(model: Path, dtype: torch.dtype, device: torch.device) -> Wrapped:
    """The model converted and put on `device` at `dtype`, uncached (the package build's child process)."""
    return on_device(convert_onnx(model), dtype, device)


class ModuleFromOnnx(CachedLoader[Converted]):
    """The onnx2torch conversion of `model`, built once per node into the engine cache and read from it after."""

    suffix = ".pt"

    def __init__(self, model: Path, cache_dir: Path | None = None) -> None:
        super().__init__(cache_dir)
        self.model = Path(model)

    def key(self) -> dict:
        return {"kind": TORCH_MODULE_KIND, "model_sha256": model_sha256(self.model), "torch": torch.__version__,
                "onnx2torch": importlib.metadata.version("onnx2torch")}

    def build(self, path: Path) -> None:
        converted = convert_onnx(self.model)
        torch.save({"net": converted.net, "graph_dtype": converted.graph_dtype}, path)

    def read(self, path: Path) -> Converted:
        try:  # the entry is this node's own, written by build() above: a pickled module, not only weights
            saved = torch.load(path, map_location="cpu", weights_only=False)
            return Converted(saved["net"].eval(), saved["graph_dtype"])
        except Exception as exc:  # truncated, or pickled by another onnx2torch: any unpickling error
            raise StaleEntry(f"{path}: {type(exc).__name__}: {exc}") from None


class ModuleForDevice(Loader[Wrapped]):
    """A converted module from `source` on `device` at `precision` (eager and cudagraph modes); on a GPU its
    convolution+ReLU chains rewritten as cuDNN's fused calls (`fused`: how many)."""

    def __init__(self, source: Loader[Converted], precision: str, device: torch.device) -> None:
        self.source, self.precision, self.device = source, precision, device
        self.fused = 0

    @property
    def status(self) -> str:  # type: ignore[override] - the cached source's
        return self.source.status

    def __call__(self) -> Wrapped:
        start = time.perf_counter()
        module = on_device(self.source(), DTYPES[self.precision], self.device)
        if self.device.type == "cuda" and isinstance(module.net, torch.fx.GraphModule):
            self.fused = fuse_conv_relu(module.net)
        self.seconds = time.perf_counter() - start
        return module


class PackageFromOnnx(CachedLoader[Compiled]):
    """compile = "compiled": the model as an AOTInductor package for this GPU and software, built once per node
    in a child process, then loaded (one shared library: no conversion, no Dynamo, no Inductor here)."""

    suffix = ".pt2"

    def __init__(self, model: Path, batch: int, precision: str, device: torch.device,
                 cache_dir: Path | None = None) -> None:
        super().__init__(cache_dir)
        self.model, self.batch, self.precision, self.device = Path(model), batch, precision, device

    def key(self) -> dict:
        props = torch.cuda.get_device_properties(self.device)
        return {"kind": TORCH_KIND, "model_sha256": model_sha256(self.model), "gpu": props.name,
                "compute_capability": f"{props.major}.{props.minor}", "driver": driver_version(),
                "torch": torch.__version__, "cuda": torch.version.cuda,
                "input_shape": list(inspect_model(self.model).input_shape[1:]), "batch": self.batch,
                "precision": self.precision, "inductor": AOTI_CONFIGS, "link": AOTI_LINK_FLAGS,
                "cpu_flags": cpu_features()}

    def build(self, path: Path) -> None:
        build_package(self.model, path, self.batch, self.precision, self.device.index)

    def read(self, path: Path) -> Compiled:
        try:
            return load_aoti(path, self.device.index)
        except RuntimeError as exc:  # another torch's package, or a damaged file
            raise StaleEntry(f"{path}: {exc}") from None


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
