"""A benchmark archive that looks like a real one: JPEGs cut from photographs at a realistic mix of sizes and
encodings, or (with --uniform) every image one size, as a second line.

The photographs are the sample photos that scikit-image's wheel ships (skimage/data: astronaut, coffee, the
cat, the rocket, the motorcycle pair, ...); no download is needed, only `pip install scikit-image` or a folder
of photos given with --photos. Each image is a seeded random crop of one photo (aspect 3:4 to 16:9, either
orientation, sometimes mirrored), rescaled so that its shorter side is 300-640 px and its longer at most
1000 px, then encoded as most photo archives hold them: JPEG quality 70-95, chroma 4:2:0 for most, some
4:4:4 and 4:2:2, about 5% progressive and 5% grayscale.

    python benchmarks/photos.py --out results/photos --count 2048            # mixed sizes
    python benchmarks/photos.py --out results/uniform --count 2048 --uniform 500x375
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image, ImageOps

#: Photographs among skimage/data's files (the others are drawings, textures, charts or microscopy).
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
          "motorcycle_right.png", "hubble_deep_field.jpg", "camera.png", "moon.png", "coins.png")
#: Chroma subsampling as Pillow names it (0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0) and its share of the archive.
SUBSAMPLING = ((2, 0.75), (0, 0.12), (1, 0.13))
PROGRESSIVE, GRAYSCALE = 0.05, 0.05


def default_photos() -> Path | None:
    """skimage/data of an installed scikit-image, found without importing it; None when it is not installed."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if folder.is_dir() else None


def source_photos(folder: Path) -> list[Path]:
    """The photographs in `folder`: PHOTOS where it is skimage's data folder, else every JPEG and PNG in it."""
    known = [folder / name for name in PHOTOS if (folder / name).is_file()]
    return known or sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def recipe(index: int, seed: int, sources: int, uniform: tuple[int, int] | None) -> dict:
    """What image `index` is: its photo, crop, size and encoding, drawn from a generator seeded by both."""
    rng = random.Random(seed * 1_000_003 + index)
    aspect = rng.uniform(4 / 3, 16 / 9) if rng.random() < 0.7 else rng.uniform(1.0, 4 / 3)
    portrait = rng.random() < 0.25
    if uniform:
        width, height = uniform
    else:
        short = rng.randint(300, 640)
        long = min(1000, round(short * aspect))
        width, height = (short, long) if portrait else (long, short)
    sub = rng.choices([s for s, _ in SUBSAMPLING], [w for _, w in SUBSAMPLING])[0]
    return {"photo": rng.randrange(sources), "width": width, "height": height, "cut": rng.uniform(0.55, 1.0),
            "x": rng.random(), "y": rng.random(), "mirror": rng.random() < 0.5, "quality": rng.randint(70, 95),
            "subsampling": sub, "progressive": rng.random() < PROGRESSIVE, "gray": rng.random() < GRAYSCALE}


def encode(photo: Image.Image, r: dict) -> bytes:
    """One archive image from its photo and recipe: crop to the target aspect, resize, encode."""
    w, h = photo.size
    aspect = r["width"] / r["height"]
    cw = min(w, h * aspect) * r["cut"]
    ch = cw / aspect
    left, top = (w - cw) * r["x"], (h - ch) * r["y"]
    image = photo.resize((r["width"], r["height"]), Image.Resampling.LANCZOS,
                         box=(left, top, left + cw, top + ch))
    if r["mirror"]:
        image = ImageOps.mirror(image)
    if r["gray"]:
        image = image.convert("L")
    buf = io.BytesIO()
    options = {} if r["gray"] else {"subsampling": r["subsampling"]}
    image.save(buf, "JPEG", quality=r["quality"], progressive=r["progressive"], **options)
    return buf.getvalue()


_PHOTOS: list[Image.Image] = []


def _load(paths: list[str]) -> None:
    _PHOTOS[:] = [Image.open(p).convert("RGB") for p in paths]


def _make(job: tuple[int, str, dict]) -> tuple[int, int, str]:
    index, path, r = job
    data = encode(_PHOTOS[r["photo"]], r)
    Path(path).write_bytes(data)
    return len(data), r["width"] * r["height"], f"{r['width']}x{r['height']}"


def make_archive(out: Path, count: int, seed: int = 0, photos: Path | None = None,
                 uniform: tuple[int, int] | None = None, workers: int | None = None) -> dict:
    """Write `count` JPEGs under OUT/pNN/ (100 sub-folders) and OUT-made.json; an archive that an earlier call
    made with the same arguments is kept as it is. Returns what was made (sizes, encodings, bytes)."""
    folder = photos or default_photos()
    if folder is None:
        raise SystemExit("photos.py: no photographs: `pip install scikit-image` (its wheel ships them) "
                         "or pass --photos FOLDER")
    sources = source_photos(folder)
    made = out.parent / f"{out.name}-made.json"
    key = {"count": count, "seed": seed, "uniform": list(uniform) if uniform else None,
           "photos": [p.name for p in sources]}
    if made.is_file() and json.loads(made.read_text()).get("key") == key:
        return json.loads(made.read_text())
    recipes = [recipe(i, seed, len(sources), uniform) for i in range(count)]
    jobs = [(i, str(out / f"p{i % 100:02d}" / f"img_{i:07d}.jpg"), r) for i, r in enumerate(recipes)]
    for sub in {Path(p).parent for _, p, _ in jobs}:
        sub.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers or os.cpu_count(), initializer=_load,
                             initargs=([str(p) for p in sources],)) as pool:
        results = list(pool.map(_make, jobs, chunksize=64))
    sizes = Counter(size for _, _, size in results)
    summary = {"key": key, "count": count, "distinct_sizes": len(sizes),
               "mean_kb": round(sum(b for b, _, _ in results) / count / 1024, 1),
               "mean_megapixels": round(sum(p for _, p, _ in results) / count / 1e6, 3),
               "progressive": sum(r["progressive"] for r in recipes), "gray": sum(r["gray"] for r in recipes),
               "subsampling": dict(Counter({0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}[r["subsampling"]]
                                           for r in recipes if not r["gray"]))}
    made.write_text(json.dumps(summary, indent=1))
    return summary


def size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder to write the archive into")
    ap.add_argument("--count", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--photos", type=Path, help="folder of source photos (default: scikit-image's sample photos)")
    ap.add_argument("--uniform", type=size, metavar="WxH", help="every image this size (the one-size case)")
    args = ap.parse_args()
    print(json.dumps(make_archive(args.out, args.count, args.seed, args.photos, args.uniform), indent=1))


if __name__ == "__main__":
    main()
