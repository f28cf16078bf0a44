"""Where a scoring run's first batch goes: each step of the first batches, cold and then warm, in a fresh process.

    python benchmarks/gpu/ab/probe_first_batch.py [WORK]   # after exp.py made WORK; writes $OUT/probe_first_batch.json

A run's first batch took 0.18-0.19 s of about a second of scoring (docs/performance.md), several times a warm
batch. In the order a rank runs them (engine activated, then the GPU decoder opened and probed), each of six
batches is timed step by step, with the stream synchronized after each GPU step: read and prepare (one worker's
`_read`), the library's decode, resize/crop/normalise, the engine (cudagraph), top-k, and the part writer.
"""
import json, os, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT)]
T0 = time.perf_counter()
import torch

from batchscore.engines import EngineOptions, create_engine
from batchscore.gpu import cuda_defaults
from batchscore.gpudecode import GpuDecoder, resize_crop_normalise
from batchscore.preprocess import Preprocess
from batchscore.runner import topk
from batchscore.sources import list_items
from batchscore.writer import PartWriter

cuda_defaults()
WORK = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/exp")
OUT = Path(os.environ.get("OUT", "/tmp/expout"))
res = {"imports_s": round(time.perf_counter() - T0, 3)}


def timed(name: str, fn, row: dict, sync=None):  # noqa: ANN001, ANN201
    t = time.perf_counter()
    value = fn()
    if sync is not None:
        sync.synchronize()
    row[name] = round(1e3 * (time.perf_counter() - t), 2)
    return value


setup: dict = {}
engine = timed("engine_activate_ms", lambda: create_engine("torch", WORK / "resnet50-fp16.onnx", EngineOptions(
    256, device=0, precision="fp32", compile="cudagraph", cache_dir=WORK / "cache")).activate(), setup)
gpu = timed("decoder_open_ms", lambda: GpuDecoder(0, 1.0, "nvimgcodec", os.cpu_count() or 1), setup)
timed("decoder_probe_ms", gpu.probe, setup)
res["setup"] = setup
spec, lane = Preprocess(), gpu.lanes[0]
items = list_items([WORK / "images"])[:6 * 256]
writer = PartWriter(WORK / "probe-out", "probe", 0)
rows = []
for n in range(6):
    chunk, row = items[n * 256:(n + 1) * 256], {}
    reads = timed("read_prepare", lambda: gpu._read(chunk, range(len(chunk)), spec.max_pixels), row)
    with torch.cuda.device(gpu.device), torch.cuda.stream(lane.stream), torch.inference_mode():
        decoded = timed("decode", lambda: lane.lib.decode([e for _, e, _, _ in reads], lane.stream), row, lane.stream)
        out = timed("empty", lambda: torch.empty((len(chunk), *spec.shape), device=gpu.device), row)
        images = {i: image for i, (image, _) in enumerate(decoded)}
        timed("resize", lambda: resize_crop_normalise(out, images, spec), row, lane.stream)
    outputs = timed("engine", lambda: list(engine.infer_iter([out]))[0], row)
    logits = next(iter(outputs.values()))
    idx, score = timed("topk", lambda: topk(logits, 5), row)
    errors = [""] * len(chunk)
    timed("write", lambda: (writer.add([it.key for it in chunk], idx, score, errors, {}), writer.commit()), row)
    rows.append(row)
    print(n, row, flush=True)
res["batches_ms"] = rows
engine.deactivate()
gpu.close()
(OUT / "probe_first_batch.json").write_text(json.dumps(res, indent=1))
print(json.dumps(res), flush=True)
