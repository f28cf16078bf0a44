"""Where a GPU decoder's time goes, per batch, on one GPU: what limits `decode = "gpu"` below the raw decode rate.

For each GPU decode library installed, on JPEGs made on the machine (as decode_pipeline.py makes them),
batch by batch with the GPU synchronized around each step: the library's own decode call, turning its
images into torch tensors (nvImageCodec: `__cuda_array_interface__` as scoring does it, and DLPack for
comparison), `resize_crop_normalise`, and one worker's read + header check + library input per image.
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
from concurrent.futures import ProcessPoolExecutor
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
    import torch

    from batchscore.gpudecode import GpuDecoder, resize_crop_normalise

    decoder = GpuDecoder(0, 1.0, library, threads=1)
    decoder.probe()
    lib, totals = decoder.lib, {}
    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]

    def add(name: str, seconds: float) -> None:
        totals[name] = totals.get(name, 0.0) + seconds

    for n, chunk in enumerate(chunks):
        start = time.perf_counter()
        reads = decoder._read(chunk, range(len(chunk)), spec.max_pixels)
        add("read_route_prepare_one_worker", time.perf_counter() - start)
        prepared = [encoded for _, encoded, _, _ in reads]
        if library == "nvimgcodec":
            first = next(iter(lib.decoders.values()))
            seconds, images = synced(torch, lambda: first.decode(prepared, params=lib.params,
                                                                 cuda_stream=decoder.lanes[0].stream.cuda_stream))
            add("library_decode_call", seconds)
            add("wrap_cuda_array_interface", synced(torch, lambda: [torch.as_tensor(i, device=decoder.device)
                                                                    for i in images])[0])
            if hasattr(images[0], "__dlpack__"):
                add("wrap_dlpack", synced(torch, lambda: [torch.from_dlpack(i) for i in images])[0])
        seconds, decoded = synced(torch, lambda: lib.decode(prepared, decoder.lanes[0].stream))
        add("library_decode_as_scoring_calls_it", seconds)
        out = torch.empty((len(chunk), *spec.shape), device=decoder.device)
        images = {i: image for i, (image, _) in enumerate(decoded)}
        add("resize_crop_normalise", synced(torch, lambda: resize_crop_normalise(out, images, spec))[0])
        if n == 0:
            totals.clear()  # the first batch warms up: left out
    decoder.close()
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
    from batchscore.gpudecode import GpuDecoder, libraries
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
            decoder = GpuDecoder(0, 1.0, library, workers)
            decoder.probe()
            results[f"{library}_decode_only_{workers}_workers"] = run = decode_only(items, spec, args.batch_size,
                                                                                   workers, decoder)
            decoder.close()
            print(f"{library} decode only, {workers} workers: {run['img_s']} img/s", flush=True)
        write_results(args.out, "decoder_breakdown", results, show=False)
    write_results(args.out, "decoder_breakdown", results)


if __name__ == "__main__":
    main()
