"""The pycuda buffer ring on a real GPU (no TensorRT needed): every batch comes back right while the
next one is copied in, including a short final batch, whether it comes from host memory or is already
on the GPU (CuPy array, torch CUDA tensor). Skips without pycuda or a GPU."""

from __future__ import annotations

import numpy as np
import pytest

cuda = pytest.importorskip("pycuda.driver")
try:
    cuda.init()
    HAVE_GPU = cuda.Device.count() > 0
except cuda.Error:
    HAVE_GPU = False
pytestmark = pytest.mark.skipif(not HAVE_GPU, reason="no CUDA GPU visible to pycuda")

ROWS, WIDTH = 64, 1 << 16


@pytest.fixture(scope="module")
def ring():
    cp = pytest.importorskip("cupy")  # launches the stand-in kernel on the ring's stream and memory

    from batchscore.engines.cudabuffers import BufferRing, CudaContext

    ctx = CudaContext(0)
    # Slow on purpose (a loop per element), so copy-in of the next batch really overlaps this compute.
    kernel = cp.ElementwiseKernel("float32 x", "float32 y",
                                  "float v = x; for (int k = 0; k < 200; ++k) v = v * 0.5f + 1.0f; y = v + x",
                                  "slow_affine")

    def device_array(allocation, n: int):  # noqa: ANN001, ANN202 - pycuda allocation -> CuPy view
        memory = cp.cuda.UnownedMemory(int(allocation), n * 4, allocation)
        return cp.ndarray((n,), cp.float32, cp.cuda.MemoryPointer(memory, 0))

    def launch(slot, stream):  # noqa: ANN001, ANN202 - what TensorRT's execute_async_v3 stands for
        n = slot.rows * WIDTH
        with cp.cuda.ExternalStream(stream.handle):
            kernel(device_array(slot.dev_in["x"], n), device_array(slot.dev_out["y"], n))

    r = BufferRing({"x": ((ROWS, WIDTH), np.float32)}, {"y": ((ROWS, WIDTH), np.float32)})
    yield r, launch, ctx
    r.close()
    ctx.close()


def expected(x: np.ndarray) -> np.ndarray:
    v = x.copy()
    for _ in range(200):
        v = v * np.float32(0.5) + np.float32(1.0)
    return v + x


def pipelined(r, launch, batches: list) -> tuple[list[dict[str, np.ndarray]], object]:  # noqa: ANN001
    """The engines' infer_iter pattern: submit i+1, then collect i; (outputs, the last slot)."""
    results, pending = [], None
    for batch in batches:
        slot = r.submit({"x": batch}, launch)
        if pending is not None:
            results.append(r.collect(pending))
        pending = slot
    results.append(r.collect(pending))
    return results, pending


def cupy_array(x: np.ndarray):  # noqa: ANN201 - a CuPy array
    cp = pytest.importorskip("cupy")
    array = cp.asarray(x)
    cp.cuda.get_current_stream().synchronize()  # as decode/gpu.py does: its stream is done before hand-over
    return array


def torch_tensor(x: np.ndarray):  # noqa: ANN201 - a torch CUDA tensor
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch build sees no CUDA GPU")
    tensor = torch.from_numpy(x).to("cuda:0")
    torch.cuda.synchronize()
    return tensor


def test_pipelined_batches_come_back_in_order_and_correct(ring) -> None:  # noqa: ANN001
    r, launch, _ = ring
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((n, WIDTH), dtype=np.float32) for n in (ROWS, ROWS, ROWS, 17)]
    results, pending = pipelined(r, launch, batches)
    assert [len(o["y"]) for o in results] == [ROWS, ROWS, ROWS, 17]
    for batch, out in zip(batches, results):
        np.testing.assert_allclose(out["y"], expected(batch), rtol=1e-5, atol=1e-5)
    copy_in, compute, copy_out = pending.times_ms()
    assert compute > 0 and copy_in > 0 and copy_out > 0


def test_a_third_batch_in_flight_is_refused(ring) -> None:  # noqa: ANN001
    r, launch, _ = ring
    batch = np.ones((4, WIDTH), np.float32)
    first, second = r.submit({"x": batch}, launch), r.submit({"x": batch}, launch)
    with pytest.raises(RuntimeError, match="in flight"):
        r.submit({"x": batch}, launch)
    for slot in (first, second):
        np.testing.assert_allclose(r.collect(slot)["y"], expected(batch), rtol=1e-5)


@pytest.mark.parametrize("to_device", [cupy_array, torch_tensor], ids=["cupy", "torch"])
def test_device_arrays_give_the_same_outputs_as_host_arrays(ring, to_device) -> None:  # noqa: ANN001
    r, launch, _ = ring
    rng = np.random.default_rng(1)
    host = [rng.standard_normal((n, WIDTH), dtype=np.float32) for n in (ROWS, ROWS, 17)]
    device = [to_device(b) for b in host]
    from_host, _ = pipelined(r, launch, host)
    from_device, _ = pipelined(r, launch, device)
    assert [len(o["y"]) for o in from_device] == [ROWS, ROWS, 17]
    for h, d in zip(from_host, from_device):
        np.testing.assert_array_equal(d["y"], h["y"])
    assert all(not slot.sources for slot in r.slots)  # collect let go of the device arrays


def test_a_device_array_that_does_not_fit_is_refused(ring) -> None:  # noqa: ANN001
    cp = pytest.importorskip("cupy")
    r, launch, _ = ring
    with pytest.raises(ValueError, match="float64"):
        r.submit({"x": cp.zeros((4, WIDTH), cp.float64)}, launch)
    with pytest.raises(ValueError, match="C-contiguous"):
        r.submit({"x": cp.zeros((4, 2 * WIDTH), cp.float32)[:, ::2]}, launch)
    batch = np.ones((4, WIDTH), np.float32)  # nothing was left in flight: the ring still takes batches
    (out,), _ = pipelined(r, launch, [cupy_array(batch)])
    np.testing.assert_allclose(out["y"], expected(batch), rtol=1e-5)
