"""The torch backend where this machine allows: PyTorch on the CPU (eager) against ONNX Runtime, and
its refusals (INT8 Q/DQ graphs, GPU-only modes without a GPU). tests/gpu has the CUDA paths."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

pytest.importorskip("torch")

from batchscore.engines import EngineError, EngineOptions, choose_backend, create_engine  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "data" / "model.onnx"
HAVE_ONNX2TORCH = importlib.util.find_spec("onnx2torch") is not None


@pytest.mark.skipif(not HAVE_ONNX2TORCH, reason="onnx2torch (and the torchvision it imports) not installed")
@pytest.mark.parametrize("variant,tol", [("fp32", 1e-4), ("fp16", 2e-2)])
def test_cpu_eager_agrees_with_onnxruntime(tmp_path: Path, variant: str, tol: float) -> None:
    """The FP32 model, and its FP16 variant (FP16 weights, Casts at the edges) run at its own types."""
    from batchscore.precision import to_fp16

    model = MODEL
    if variant == "fp16":
        model = tmp_path / "fp16.onnx"
        to_fp16(MODEL, model, {})
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((n, 3, 224, 224), dtype=np.float32) for n in (4, 4, 1)]
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    expected = [session.run(None, {session.get_inputs()[0].name: b})[0] for b in batches]
    import torch

    torch.set_num_threads(1)  # as under mpirun, which starts torch with one thread: the engine sets its own
    with create_engine("torch", model, EngineOptions(4, threads=2, cache_dir=tmp_path / "cache")) as engine:
        assert engine.device_name == "cpu" and engine.output_names == ["logits"]
        assert torch.get_num_threads() == 2
        got = [o["logits"] for o in engine.infer_iter(batches)]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=0, atol=tol * max(1.0, np.abs(e).max()))
        assert (g.argmax(1) == e.argmax(1)).all()


def qdq_model(path: Path) -> Path:
    """A one-convolution model with explicit QuantizeLinear/DequantizeLinear, as INT8 exports have."""
    nodes = [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
             helper.make_node("Conv", ["dq", "w"], ["logits"])]
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.05]), helper.make_tensor("z", TensorProto.INT8, [], [0]),
             helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], [0.1] * 6)]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_quantized_model_is_refused_with_what_to_use(tmp_path: Path) -> None:
    engine = create_engine("torch", qdq_model(tmp_path / "int8.onnx"), EngineOptions(4, cache_dir=tmp_path))
    with pytest.raises(EngineError, match="QuantizeLinear.*onnx2torch does not convert.*'tensorrt' or 'onnxruntime'"):
        engine.activate()


@pytest.mark.parametrize("options,message", [(EngineOptions(4, precision="int8"), "use backend = 'tensorrt'"),
                                             (EngineOptions(4, compile="cudagraph"), "needs a GPU")])
def test_refusals(options: EngineOptions, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        create_engine("torch", MODEL, options).activate()


def test_auto_without_a_gpu_is_onnxruntime_with_the_reason() -> None:
    backend, reason = choose_backend("auto")
    assert backend == "onnxruntime" and "no GPU visible" in reason


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++: AOTInductor compiles a C++ wrapper")
def test_package_is_built_in_a_child_linked_symbolic_and_reproduces_the_module(tmp_path: Path) -> None:
    """The compiled mode's package, built by its child process from an exported program and loaded on the CPU:
    its wrapper library binds its own symbols (-Bsymbolic; without it the H100 load crashed in std::regex),
    and the loaded model computes what the module does."""
    import torch

    from batchscore.engines.torch_loaders import build_package, load_aoti

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                 torch.nn.Flatten()).eval()
    x = torch.randn(4, 3, 32, 32)
    program, package = tmp_path / "program.pt2", tmp_path / "model.pt2"
    torch.export.save(torch.export.export(module, (x,)), program)
    build_package(program, package, batch=4, precision="fp32", device=None)
    with zipfile.ZipFile(package) as z:
        libraries = [n for n in z.namelist() if n.endswith(".so")]
        assert libraries, z.namelist()
        z.extract(libraries[0], tmp_path)
    dynamic = subprocess.run(["readelf", "-d", str(tmp_path / libraries[0])], capture_output=True, text=True)
    if dynamic.returncode == 0:
        assert "SYMBOLIC" in dynamic.stdout
    (out,) = load_aoti(package, -1)(x)
    with torch.inference_mode():
        np.testing.assert_allclose(out.numpy(), module(x).numpy(), atol=1e-4)


def test_failed_package_build_is_an_engine_error_and_its_child_starts_no_mpi(tmp_path: Path) -> None:
    """The build's child process imports nothing that starts MPI (it runs under an MPI rank), and its failure
    reaches the rank as an EngineError that names the model, the exit and the fix."""
    from batchscore.engines.torch_loaders import build_package

    check = "import sys, batchscore.engines.aoti_build; sys.exit('mpi4py' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check]).returncode == 0
    broken = tmp_path / "broken.pt2"
    broken.write_bytes(b"not a saved program")
    with pytest.raises(EngineError, match=r"broken\.pt2 failed in its child process \(exit 1\).*'cudagraph'"):
        build_package(broken, tmp_path / "model.pt2", batch=4, precision="fp32", device=None)
    assert not (tmp_path / "model.pt2").exists()


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++: AOTInductor compiles a C++ wrapper")
def test_package_that_does_not_load_is_deleted_and_the_build_fails(tmp_path: Path) -> None:
    """A package that builds but cannot be loaded (here: its library needs a shared library that exists at
    link time only) fails the build's check in a fresh process, with the loader's reason, and is not kept."""
    import torch

    from batchscore.engines.torch_loaders import build_package

    link_only = tmp_path / "link-only"
    link_only.mkdir()
    subprocess.run(["g++", "-shared", "-o", str(link_only / "libbatchscoremissing.so"), "-x", "c++", "/dev/null"],
                   check=True)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    program, package = tmp_path / "program.pt2", tmp_path / "model.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(2, 3, 8, 8),)), program)
    flags = f"-Wl,-Bsymbolic -Wl,--no-as-needed -L{link_only} -lbatchscoremissing"
    with pytest.raises(EngineError, match=r"loading it in a fresh process failed \(exit 1\): .*libbatchscoremissing"):
        build_package(program, package, batch=2, precision="fp32", device=None, link_flags=flags)
    assert not package.exists()


@pytest.mark.parametrize("classes", [3, 1000])
def test_softmax_topk_gives_the_host_topk(classes: int) -> None:
    """The GPU adapter's top-k (softmax_topk, here on CPU tensors) gives runner.topk's indices, ties in class order
    and NaN rows included, and its probabilities; k below, at and above the class count."""
    import torch

    from batchscore.engines.torch_backend import softmax_topk
    from batchscore.runner import topk

    rng = np.random.default_rng(2)
    logits = rng.normal(size=(64, classes)).astype(np.float16).astype(np.float32)  # FP16 logits: many ties
    logits[1] = 0.5
    logits[2] = np.nan
    logits[3] = -np.inf
    logits[3, -1] = 0.0
    for k in (1, 5, classes, classes + 2):
        idx, score = softmax_topk(torch.from_numpy(logits), k)
        want_idx, want_score = topk(logits, k)
        assert idx.dtype == torch.int32 and idx.shape == want_idx.shape
        assert np.array_equal(idx.numpy(), want_idx)
        np.testing.assert_allclose(score.numpy(), want_score, rtol=1e-6, atol=0)


def test_fused_conv_relu_chains_compute_what_the_graph_did() -> None:
    """The rewrite on a traced ResNet-shaped graph: every convolution → [add →] ReLU chain becomes one ConvReLU
    call (on the CPU they run the same ops as before: the cuDNN path is in tests/gpu), the downsampling
    convolution stays as it was, and the outputs are the original graph's."""
    import torch
    from conftest import residual_net

    from batchscore.engines.torch_fuse import ConvReLU, fuse_conv_relu

    net = residual_net()
    graph = torch.fx.symbolic_trace(net)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert fuse_conv_relu(graph) == 5
    assert sum(isinstance(m, ConvReLU) for m in graph.modules()) == 5
    assert sum(type(m) is torch.nn.Conv2d for m in graph.modules()) == 6  # five inside ConvReLU, and the downsample
    kinds = [n.op for n in graph.graph.nodes if n.op in ("call_module", "call_function")]
    assert len(kinds) == 5 + 1 + 3  # the fused calls, the downsample, pooling / flatten / linear: no ReLU, no add
    with torch.inference_mode():
        torch.testing.assert_close(graph(x), net(x), rtol=0, atol=0)


def test_chains_whose_parts_have_other_uses_are_not_fused() -> None:
    """A convolution whose output is also used elsewhere must still be computed on its own: left as it is."""
    import torch

    from batchscore.engines.torch_fuse import fuse_conv_relu

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.a(x)
            s = self.b(x) + a
            return torch.relu(a) + torch.relu(s) + s  # a and s both have two users

    net = Net().eval()
    graph = torch.fx.symbolic_trace(net)
    x = torch.randn(2, 3, 16, 16)
    assert fuse_conv_relu(graph) == 0
    torch.testing.assert_close(graph(x), net(x), rtol=0, atol=0)


def test_a_fused_chain_takes_only_a_sum_of_the_convolutions_own_shape() -> None:
    """A residual added with broadcasting (a per-channel constant) or of another type would change meaning in
    cuDNN's fused call, which adds z as it is: such a chain runs unfused. (On the CPU every chain does; for the
    checks of z, the input stands in for a GPU tensor by its shape and type, all that they read of it.)"""
    import torch

    from batchscore.engines.torch_fuse import ConvReLU

    fused = ConvReLU(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1))
    x = torch.randn(2, 3, 9, 9)
    out = (2, 4, 5, 5)  # (9 + 2 * 1 - 1 * (3 - 1) - 1) // 2 + 1 = 5
    assert fused(x, torch.zeros(out)).shape == out and not fused._takes(x, torch.zeros(out)) and not fused.took
    on_gpu = type("OnGpu", (), {"is_cuda": True, "shape": x.shape, "dtype": x.dtype})()
    assert fused._takes(on_gpu, None) and fused._takes(on_gpu, torch.zeros(out))
    assert not fused._takes(on_gpu, torch.zeros(1, 4, 1, 1))  # broadcast per channel
    assert not fused._takes(on_gpu, torch.zeros(2, 4, 5, 1))  # broadcast along a row
    assert not fused._takes(on_gpu, torch.zeros(out, dtype=torch.float16))
    fused.unfused = "refused at warm-up"
    assert not fused._takes(on_gpu, None)
