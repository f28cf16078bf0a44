"""JPEG decoders for the CPU path, each against the reference preprocessing: speed per core and agreement.

The reference is the textbook path (Pillow decodes the whole image, antialiased bilinear resize of the shorter
side, centre crop, normalise) written out here, independent of batchscore.preprocess. Contenders:

- batchscore:          batchscore.preprocess.preprocess as it is (the CPU decode path of scoring);
- batchscore_draft:    the same with decode_draft (Pillow's DCT scaling, 1/2, 1/4 or 1/8 while both sides >= resize);
- simplejpeg:          simplejpeg's libjpeg-turbo decode of the whole image, then the reference resize and crop;
- simplejpeg_scaled:   simplejpeg scaled to the smallest size with both sides >= resize (libjpeg-turbo's M/8 steps);
- simplejpeg_fast:     the same with fastdct and fastupsample;
- turbojpeg_scaled:    PyTurboJPEG (needs the system's libturbojpeg) at the same libjpeg-turbo scale.

Speed: images/s of one process on one core (bytes already in memory, decode to the normalised tensor), the
median of alternating rounds. Agreement with the reference over every image of the archive: mean and 99th
percentile absolute difference in normalised units, and top-1 agreement with the model. Candidates that are
not installed are reported as such. Printed as a table; JSON beside it.

    python benchmarks/photos.py --out /tmp/photos --count 9000
    python benchmarks/jpeg_decoders.py --archive /tmp/photos --json results/jpeg_decoders.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from batchscore.preprocess import Preprocess, preprocess

ROOT = Path(__file__).resolve().parents[1]
SPEC = Preprocess()
#: absolute differences are counted in bins this wide (normalised units) for the 99th percentile
BIN = 1e-3


def finish(img: Image.Image, spec: Preprocess = SPEC) -> np.ndarray:
    """The reference's resize, crop and normalise of a decoded RGB image, written out the plain way."""
    w, h = img.size
    scale = spec.resize / min(w, h)
    new_w, new_h = max(spec.resize, round(w * scale)), max(spec.resize, round(h * scale))
    left, top = (new_w - spec.crop) // 2, (new_h - spec.crop) // 2
    img = img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=None)
    arr = np.asarray(img.crop((left, top, left + spec.crop, top + spec.crop)), np.float32) / 255.0
    arr = (arr - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def reference(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    return finish(img if img.mode == "RGB" else img.convert("RGB"))


def simplejpeg_decoder(scaled: bool, fast: bool = False) -> Callable[[bytes], np.ndarray]:
    import simplejpeg

    least = SPEC.resize if scaled else 0

    def run(data: bytes) -> np.ndarray:
        arr = simplejpeg.decode_jpeg(data, "RGB", fastdct=fast, fastupsample=fast, min_height=least, min_width=least)
        return finish(Image.fromarray(arr))

    return run


def turbojpeg_decoder() -> Callable[[bytes], np.ndarray]:
    from turbojpeg import TJPF_RGB, TurboJPEG

    jpeg = TurboJPEG()
    factors = sorted(jpeg.scaling_factors, key=lambda f: f[0] / f[1])  # smallest scale first

    def run(data: bytes) -> np.ndarray:
        w, h, _, _ = jpeg.decode_header(data)
        factor = next(f for f in factors if min(w, h) * f[0] / f[1] >= SPEC.resize or f == (1, 1))
        arr = jpeg.decode(data, pixel_format=TJPF_RGB, scaling_factor=factor)
        return finish(Image.fromarray(arr))

    return run


CONTENDERS: dict[str, Callable[[], Callable[[bytes], np.ndarray]]] = {
    "reference": lambda: reference,
    "batchscore": lambda: lambda data: preprocess(data, SPEC),
    "batchscore_draft": lambda: lambda data: preprocess(data, SPEC, draft=True),
    "simplejpeg": lambda: simplejpeg_decoder(scaled=False),
    "simplejpeg_scaled": lambda: simplejpeg_decoder(scaled=True),
    "simplejpeg_fast": lambda: simplejpeg_decoder(scaled=True, fast=True),
    "turbojpeg_scaled": turbojpeg_decoder,
}


def rate(run: Callable[[bytes], np.ndarray], datas: list[bytes]) -> float:
    start = time.perf_counter()
    for data in datas:
        run(data)
    return len(datas) / (time.perf_counter() - start)


def agreement(runs: dict[str, Callable[[bytes], np.ndarray]], datas: list[bytes], model: Path,
              batch: int = 64) -> dict[str, dict]:
    """Each contender against the reference over `datas`: mean and p99 |difference|, top-1 agreement."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    hist = {k: np.zeros(int(16 / BIN) + 1, np.int64) for k in runs}
    total = {k: 0.0 for k in runs}
    same = {k: 0 for k in runs}
    for i in range(0, len(datas), batch):
        chunk = datas[i:i + batch]
        ref = np.stack([reference(d) for d in chunk])
        ref_top1 = session.run(None, {name: ref})[0].argmax(1)
        for key, run in runs.items():
            x = np.stack([run(d) for d in chunk])
            diff = np.abs(x - ref)
            total[key] += float(diff.sum(dtype=np.float64))
            hist[key] += np.bincount(np.minimum(diff / BIN, len(hist[key]) - 1).astype(np.int64).ravel(),
                                     minlength=len(hist[key]))
            same[key] += int((session.run(None, {name: x})[0].argmax(1) == ref_top1).sum())
    out = {}
    for key in runs:
        count = int(hist[key].sum())
        p99 = int(np.searchsorted(np.cumsum(hist[key]), 0.99 * count)) * BIN
        out[key] = {"mean_diff": round(total[key] / count, 5), "p99_diff": round(p99, 4),
                    "top1_agree": round(same[key] / len(datas), 5), "top1_differ": len(datas) - same[key]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", type=Path, required=True, help="folder of JPEGs (benchmarks/photos.py makes one)")
    ap.add_argument("--timed", type=int, default=1500, help="images per timed round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=0, help="images for the agreement (default: the whole archive)")
    ap.add_argument("--model", type=Path, default=ROOT / "data" / "model.onnx")
    ap.add_argument("--only", nargs="*", help="contenders to run (default: all installed)")
    ap.add_argument("--json", type=Path, default=Path("results/jpeg_decoders.json"))
    args = ap.parse_args()
    paths = sorted(args.archive.rglob("*.jp*g"))
    datas = [p.read_bytes() for p in paths[:args.images or None]]
    runs, missing = {}, {}
    for key, make in CONTENDERS.items():
        if args.only and key not in args.only:
            continue
        try:
            runs[key] = make()
        except (ImportError, RuntimeError) as exc:  # not installed, or PyTurboJPEG without libturbojpeg
            missing[key] = f"{type(exc).__name__}: {exc}"
    timed = datas[:args.timed]
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        for key in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            rates[key].append(rate(runs[key], timed))
    agree = agreement(runs, datas, args.model)
    table = {k: {"img_s_per_core": round(statistics.median(rates[k]), 1), "range": [round(min(rates[k]), 1),
             round(max(rates[k]), 1)], **agree[k]} for k in runs}
    result = {"archive": str(args.archive), "images": len(datas), "timed": len(timed), "rounds": args.rounds,
              "cores": os.cpu_count(), "load_before": os.getloadavg(), "contenders": table, "missing": missing}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    ref = table.get("reference", {}).get("img_s_per_core")
    print(f"{len(datas)} images ({len(timed)} timed, {args.rounds} rounds, one core each)")
    print(f"{'contender':<20}{'img/s/core':>11}{'/reference':>11}{'mean diff':>11}{'p99 diff':>10}{'top-1':>9}"
          f"{'differ':>8}")
    for key, row in table.items():
        print(f"{key:<20}{row['img_s_per_core']:>11.0f}{row['img_s_per_core'] / ref if ref else 0:>11.2f}"
              f"{row['mean_diff']:>11.4f}{row['p99_diff']:>10.3f}{row['top1_agree']:>9.4f}{row['top1_differ']:>8}")
    for key, why in missing.items():
        print(f"{key:<20}not run: {why[:90]}")


if __name__ == "__main__":
    main()
