"""Where a GPU decoder's time goes, per batch, on one GPU: what limits `decode = "gpu"` below the raw decode rate.

For each GPU decode library installed, on JPEGs made on the machine (as decode_pipeline.py makes them),
batch by batch with the GPU synchronized around each step: the library's decode call as the GPU decoder
makes it (`GpuLibrary.decode`), `resize_crop_normalise`, and one worker's read + header check per image.
Then the whole GPU decoder (`pipeline.batches`, decode only) with 4, 8 and cores + 1 read workers: if
fewer workers are faster, the workers' contention for the interpreter lock, not the GPU, is the limit.
`--sizes mixed` decodes the sample's scenes at their own sizes instead (each image a size of its own, as in
scaling.py's archive), where the resize runs once per image.

    python benchmarks/gpu/decoder_breakdown.py --out $OUT      # prints a table, writes decoder_breakdown.json
    python benchmarks/gpu/decoder_breakdown.py --sizes mixed --workers 2 --out $OUT
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from common import arg_parser, write_results
from decode_pipeline import decode_only, make_images, make_sample


def scene(args: tuple[int, str]) -> bool:
    """One sample scene at its own size (data/make_sample.py, seed 1); False for the sample's PNGs (skipped)."""
    index, path = args
    _, ext, data = make_sample.render(index, seed=1)
    if ext == ".jpg":
        Path(path).write_bytes(data)
    return ext == ".jpg"


def make_scenes(folder: Path, count: int) -> dict:
    """The JPEGs among the first `count` sample scenes, made in parallel (the sample's generator is serial)."""
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        jpegs = sum(pool.map(scene, [(i, str(folder / f"scene_{i:06d}.jpg")) for i in range(count)], chunksize=16))
    return {"count": jpegs, "size": "mixed", "seconds": round(time.perf_counter() - start, 1)}


def synced(torch, fn):  # noqa: ANN001, ANN201 - (seconds, result) of fn with the GPU idle before and after
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, result


def steps(library: str, items: list, spec, batch_size: int) -> dict:  # noqa: ANN001
    """Milliseconds per batch of each step, summed over the batches and divided by their number."""
    import numpy as np
    import torch

    from batchscore.decode.gpu import GpuDecoder, open_library, probe

    lib = open_library(library, 0, 1)
    probe(lib)
    decoder, totals = GpuDecoder(lib, spec, ThreadPoolExecutor(1)), {}
    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]

    def add(name: str, seconds: float) -> None:
        totals[name] = totals.get(name, 0.0) + seconds

    for n, chunk in enumerate(chunks):
        start = time.perf_counter()
        reads = decoder._read(chunk, range(len(chunk)))
        add("read_route_one_worker", time.perf_counter() - start)
        data = [d for d, route, _, _ in reads if d is not None and not route]
        with lib.device.active():
            seconds, decoded = synced(torch, lambda: lib.decode(data))
            add("library_decode_call", seconds)
            out = lib.device.empty(len(data), spec.shape)
            add("resize_crop_normalise", synced(torch, lambda: lib.device.fill(out, np.arange(len(data)), decoded,
                                                                                  spec))[0])
        if n == 0:
            totals.clear()  # the first batch warms up: left out
    decoder.close()
    decoder.executor.shutdown()
    lib.close()
    batches = len(chunks) - 1
    return {name: round(1e3 * seconds / batches, 2) for name, seconds in totals.items()} | {"batches": batches}


def main() -> None:
    ap = arg_parser(__doc__, "/tmp/batchscore-breakdown")
    ap.add_argument("--images", type=int, default=2304)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--libraries", default="nvimgcodec,torchvision")
    ap.add_argument("--sizes", default="500x375", help="WxH for every image, or mixed: the sample's scenes")
    ap.add_argument("--workers", default=f"4,8,{(os.cpu_count() or 1) + 1}", help="read workers, decode only")
    args = ap.parse_args()
    from batchscore.decode.gpu import libraries, open_library, probe
    from batchscore.preprocess import Preprocess
    from batchscore.sources import list_items

    results: dict = {"benchmark": "decoder_breakdown", "batch_size": args.batch_size, "cores": os.cpu_count(),
                     "sizes": args.sizes}
    folder = args.work / f"images-{args.sizes}"
    if args.sizes == "mixed":
        results["generate"] = make_scenes(folder, args.images)
    else:
        results["generate"] = make_images(folder, args.images, *map(int, args.sizes.split("x")))
    import torch

    results["device"] = torch.cuda.get_device_name(0)
    items, spec = [it for it in list_items([folder]) if it.key.endswith(".jpg")], Preprocess()
    results["jpegs"] = len(items)
    for library in [lib for lib in args.libraries.split(",") if lib in libraries(lib)]:
        results[f"{library}_ms_per_batch"] = steps(library, items, spec, args.batch_size)
        print(library, "ms per batch:", results[f"{library}_ms_per_batch"], flush=True)
        for workers in sorted({int(w) for w in args.workers.split(",")}):
            lib = open_library(library, 0, workers)
            probe(lib)
            results[f"{library}_decode_only_{workers}_workers"] = run = decode_only(items, spec, args.batch_size,
                                                                                   workers, lib)
            lib.close()
            print(f"{library} decode only, {workers} workers: {run['img_s']} img/s", flush=True)
        write_results(args.out, "decoder_breakdown", results, show=False)
    write_results(args.out, "decoder_breakdown", results)


if __name__ == "__main__":
    main()
