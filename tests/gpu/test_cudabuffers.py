"""The pycuda buffer ring on a real GPU (no TensorRT needed): every batch comes back right while the
next one is copied in, including a short final batch. Skips without pycuda or a GPU."""

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


def test_pipelined_batches_come_back_in_order_and_correct(ring) -> None:  # noqa: ANN001
    r, launch, _ = ring
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((n, WIDTH), dtype=np.float32) for n in (ROWS, ROWS, ROWS, 17)]
    results, pending = [], None
    for batch in batches:  # the engines' infer_iter pattern: submit i+1, then collect i
        slot = r.submit({"x": batch}, launch)
        if pending is not None:
            results.append(r.collect(pending))
        pending = slot
    results.append(r.collect(pending))
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
