#!/usr/bin/env python
"""Generate a deterministic, labelled archive of synthetic "photos" of simple shapes.

Pure numpy + Pillow, so any machine with the package dependencies can rebuild it:

    python data/make_sample.py --out data/sample --count 600 --seed 0

Layout: ``<out>/<class>/<class>_<index:05d>.jpg|.png`` and ``<out>/labels.csv``
(``key,label``, key relative to <out> with forward slashes, sorted by key).

Every image depends only on (seed, index): ``generate(count=610)`` writes the same
first 600 files as ``generate(count=600)``, and ``start`` shifts the indices to make
extra, disjoint images (held-out sets, "new images landed" tests). Output is
byte-for-byte reproducible for the same Pillow/libjpeg build (fixed per-image JPEG
quality, no PNG metadata).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: Class names in the order the sample model uses (data/classes.txt holds the same list).
CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "hstripes",
    "vstripes",
    "checker",
    "diagonal",
)

SS = 2  # supersampling factor for anti-aliased shape masks


def _luma(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def _colour(rng: np.random.Generator, avoid: list[float], min_diff: float = 70.0) -> np.ndarray:
    """A random RGB colour whose luma differs from every value in ``avoid`` by >= min_diff."""
    for _ in range(200):
        c = rng.integers(0, 256, size=3).astype(np.float32)
        if all(abs(_luma(c) - a) >= min_diff for a in avoid):
            return c
    # Fallback: pure black or white, whichever is farther away.
    mean = sum(avoid) / max(len(avoid), 1)
    return np.full(3, 0.0 if mean > 127 else 255.0, np.float32)


def _background(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, list[float]]:
    """Linear gradient between two similar-luma colours plus low-frequency blotches; float32 HxWx3."""
    base_luma = float(rng.uniform(20, 235))
    c1 = _colour_near(rng, base_luma)
    c2 = _colour_near(rng, base_luma)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * math.cos(ang) + yy * math.sin(ang))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    # Low-frequency blotches: coarse noise upsampled.
    amp = rng.uniform(0, 25)
    coarse = rng.normal(0, 1, size=(6, 6)).astype(np.float32)
    blot = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BICUBIC))
    img = img + amp * blot[..., None]
    return img, [_luma(c1), _luma(c2)]


def _colour_near(rng: np.random.Generator, luma: float) -> np.ndarray:
    for _ in range(200):
        c = rng.integers(0, 256, size=3).astype(np.float32)
        if abs(_luma(c) - luma) <= 20:
            return c
    return np.full(3, luma, np.float32)


def _rot(points: list[tuple[float, float]], cx: float, cy: float, ang: float) -> list[tuple[float, float]]:
    ca, sa = math.cos(ang), math.sin(ang)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in points]


def _shape_mask(cls: str, w: int, h: int, cx: float, cy: float, r: float, ang: float,
                rng: np.random.Generator) -> np.ndarray:
    """Anti-aliased float mask (HxW, 0..1) of a filled shape of "radius" r centred at (cx, cy)."""
    m = Image.new("L", (w * SS, h * SS), 0)
    d = ImageDraw.Draw(m)
    X, Y, R = cx * SS, cy * SS, r * SS
    if cls == "circle":
        d.ellipse((X - R, Y - R, X + R, Y + R), fill=255)
    elif cls == "ring":
        ri = R * rng.uniform(0.45, 0.65)
        d.ellipse((X - R, Y - R, X + R, Y + R), fill=255)
        d.ellipse((X - ri, Y - ri, X + ri, Y + ri), fill=0)
    elif cls == "square":
        a = R * 0.8
        d.polygon(_rot([(-a, -a), (a, -a), (a, a), (-a, a)], X, Y, ang), fill=255)
    elif cls == "triangle":
        pts = [(R * math.cos(-math.pi / 2 + k * 2 * math.pi / 3), R * math.sin(-math.pi / 2 + k * 2 * math.pi / 3))
               for k in range(3)]
        d.polygon(_rot(pts, X, Y, ang), fill=255)
    elif cls == "star":
        inner = rng.uniform(0.38, 0.5)
        pts = []
        for k in range(10):
            rr = R if k % 2 == 0 else R * inner
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((rr * math.cos(a), rr * math.sin(a)))
        d.polygon(_rot(pts, X, Y, ang), fill=255)
    elif cls == "cross":
        t = R * rng.uniform(0.22, 0.32)
        pts = [(-t, -R), (t, -R), (t, -t), (R, -t), (R, t), (t, t), (t, R), (-t, R), (-t, t), (-R, t), (-R, -t), (-t, -t)]
        d.polygon(_rot(pts, X, Y, ang), fill=255)
    else:  # textured patch: a rotated rectangle
        ax = R * rng.uniform(0.75, 0.95)
        ay = R * rng.uniform(0.75, 0.95)
        d.polygon(_rot([(-ax, -ay), (ax, -ay), (ax, ay), (-ax, ay)], X, Y, ang), fill=255)
    m = m.resize((w, h), Image.Resampling.BOX)
    return np.asarray(m, dtype=np.float32) / 255.0


def _pattern(cls: str, w: int, h: int, cx: float, cy: float, r: float, ang: float,
             rng: np.random.Generator) -> np.ndarray:
    """0..1 texture (HxW) for the patterned classes, in the patch's rotated frame."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = xx - cx, yy - cy
    ca, sa = math.cos(-ang), math.sin(-ang)
    u, v = x * ca - y * sa, x * sa + y * ca
    period = 2 * r / rng.uniform(4.0, 7.0)
    phase = rng.uniform(0, 1)

    def wave(z: np.ndarray) -> np.ndarray:  # anti-aliased square wave in 0..1
        s = np.sin(2 * math.pi * (z / period + phase))
        return np.clip(0.5 + s * 2.5, 0, 1)

    if cls == "hstripes":
        return wave(v)
    if cls == "vstripes":
        return wave(u)
    if cls == "diagonal":
        return wave(u)  # the caller passes an angle near +/-45 degrees
    # checker
    return np.clip(0.5 + 2.5 * np.sin(2 * math.pi * (u / period + phase)) * np.sin(2 * math.pi * (v / period + phase)), 0, 1)


def _clutter(rng: np.random.Generator, img: np.ndarray, s: float, avoid: list[float]) -> None:
    """A few small dots and thin short lines, anywhere in the frame (in place)."""
    h, w = img.shape[:2]
    n = int(rng.integers(0, 7))
    if n == 0:
        return
    m = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(m)
    for _ in range(n):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        if rng.random() < 0.5:
            rr = s * rng.uniform(0.008, 0.025)
            d.ellipse((x - rr, y - rr, x + rr, y + rr), fill=255)
        else:
            ln = s * rng.uniform(0.03, 0.08)
            a = rng.uniform(0, math.pi)
            d.line((x, y, x + ln * math.cos(a), y + ln * math.sin(a)), fill=255, width=max(1, int(s * 0.006)))
    mask = np.asarray(m, dtype=np.float32)[..., None] / 255.0
    col = _colour(rng, avoid, 40.0)
    alpha = rng.uniform(0.4, 0.9)
    img *= 1 - alpha * mask
    img += alpha * mask * col[None, None, :]


def render(index: int, seed: int = 0) -> tuple[str, str, bytes]:
    """Render image ``index``; returns (class name, file extension, encoded bytes)."""
    rng = np.random.default_rng([seed, index])
    cls = CLASSES[index % len(CLASSES)]
    long_side = int(rng.integers(300, 641))
    short_side = int(round(long_side * rng.uniform(0.6, 1.0)))
    w, h = (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)
    s = float(min(w, h))

    img, bg_lumas = _background(rng, w, h)
    _clutter(rng, img, s, bg_lumas)

    # Object: centre within +/-0.1 s of the image centre, extent <= 0.38 s -> inside the central ~80%.
    cx = w / 2 + rng.uniform(-0.1, 0.1) * s
    cy = h / 2 + rng.uniform(-0.1, 0.1) * s
    r = rng.uniform(0.17, 0.28) * s
    if cls in ("hstripes", "vstripes", "checker"):
        ang = math.radians(rng.uniform(-10, 10))
    elif cls == "diagonal":
        ang = math.radians(rng.uniform(-10, 10))
    elif cls == "cross":
        ang = math.radians(rng.uniform(-15, 15))
    else:
        ang = rng.uniform(0, 2 * math.pi)

    mask = _shape_mask(cls, w, h, cx, cy, r, ang, rng)
    col_a = _colour(rng, bg_lumas, 70.0)
    if cls in ("hstripes", "vstripes", "checker", "diagonal"):
        col_b = _colour(rng, [_luma(col_a)], 90.0)
        tex_ang = ang
        if cls == "diagonal":  # stripes at about +/-45 degrees inside an upright patch
            tex_ang = ang + math.radians(float(rng.choice([45.0, -45.0])))
        tex = _pattern(cls, w, h, cx, cy, r, tex_ang, rng)[..., None]
        fg = col_a[None, None, :] * tex + col_b[None, None, :] * (1 - tex)
    else:
        fg = np.broadcast_to(col_a[None, None, :], img.shape)
    img = img * (1 - mask[..., None]) + fg * mask[..., None]

    # Sensor-ish noise and occasional slight blur.
    sigma = rng.uniform(0, 12)
    img = img + rng.normal(0, 1, size=img.shape).astype(np.float32) * sigma
    out = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), mode="RGB")
    if rng.random() < 0.25:
        out = out.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.5))))
    if rng.random() < 0.10:
        out = out.convert("L")

    buf = io.BytesIO()
    if rng.random() < 0.8:
        ext = ".jpg"
        out.save(buf, format="JPEG", quality=int(rng.integers(75, 96)), optimize=False)
    else:
        ext = ".png"
        out.save(buf, format="PNG", compress_level=6)
    return cls, ext, buf.getvalue()


def _read_labels(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        return {row["key"]: row["label"] for row in csv.DictReader(f)}


def generate(out_dir: Path, count: int, seed: int = 0, start: int = 0) -> dict[str, str]:
    """Write images ``start .. start+count-1`` under out_dir; return {key: class} for them.

    labels.csv is rewritten to cover every image listed before that still exists plus
    the new ones, sorted by key, so generating with a later ``start`` into the same
    directory adds images ("new images landed") and keeps the labels complete.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for index in range(start, start + count):
        cls, ext, data = render(index, seed)
        key = f"{cls}/{cls}_{index:05d}{ext}"
        path = out_dir / key
        path.parent.mkdir(exist_ok=True)
        if not (path.is_file() and path.read_bytes() == data):
            path.write_bytes(data)
        written[key] = cls

    labels_path = out_dir / "labels.csv"
    labels = {k: v for k, v in _read_labels(labels_path).items() if (out_dir / k).is_file()}
    labels.update(written)
    with labels_path.open("w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(["key", "label"])
        for key in sorted(labels):
            wr.writerow([key, labels[key]])
    return written


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=here / "sample", help="output directory (default: data/sample)")
    ap.add_argument("--count", type=int, default=600, help="number of images (default: 600)")
    ap.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    ap.add_argument("--start", type=int, default=0, help="first image index (default: 0)")
    args = ap.parse_args(argv)
    labels = generate(args.out, args.count, args.seed, args.start)
    print(f"wrote {len(labels)} images to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
