"""Decode and preprocess one encoded image into the model's input tensor.

Kept pure (bytes in, array out) so the same function serves scoring, calibration,
training of the sample model and the reference tests.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps

#: Pillow's own default limit (about 89 Mpixel); larger images are refused as decompression bombs.
DEFAULT_MAX_PIXELS = 89_478_485


class DecodeError(ValueError):
    """An image that cannot be turned into a model input; becomes an error row, never a crash."""


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a tensor: shorter side resized, centre crop, normalised, CHW float32."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.crop > self.resize:
            raise ValueError(f"preprocess.crop ({self.crop}) must not exceed preprocess.resize ({self.resize})")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"preprocess.channel_order must be 'RGB' or 'BGR', not {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("preprocess.mean and preprocess.std need three values each, std > 0")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, self.crop, self.crop)


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode bytes to an RGB image with EXIF orientation applied; raise DecodeError with a short reason.

    draft: let a JPEG decode at 1/2, 1/4 or 1/8 scale while both sides stay >= draft (much faster
    for large photos, slightly different pixels; a no-op for other formats and small images).
    """
    if not data:
        raise DecodeError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise DecodeError(f"image too large ({w}x{h} > {max_pixels} pixels)")
            if draft:
                img.draft(None, draft)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # parses the EXIF block: a corrupt one is this image's error
            if img.mode != "RGB":
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    img = img.convert("RGBA")
                    background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                    img = Image.alpha_composite(background, img)
                img = img.convert("RGB")
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"decompression bomb: {exc}") from None
    except Image.UnidentifiedImageError:
        raise DecodeError("not an image") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on bad bytes; each is one image's error
        raise DecodeError(corrupt(exc)) from None
    return img


def corrupt(exc: Exception) -> str:
    """The error text of an image whose bytes made the decoder raise `exc`: its type and message."""
    return f"corrupt image: {type(exc).__name__}: {exc}"


def resize_crop(img: Image.Image, spec: Preprocess) -> Image.Image:
    """Resize the shorter side to spec.resize (antialiased bilinear), then centre-crop spec.crop.

    Only the part of the source under the crop is resampled (Pillow's `box`): the same geometry and filter as
    resizing the whole image and cropping, without the pixels the crop throws away; Pillow's fixed-point
    weights may round a value one level apart from the whole-image resize."""
    w, h = img.size
    scale = spec.resize / min(w, h)
    new_w, new_h = max(spec.resize, round(w * scale)), max(spec.resize, round(h * scale))
    left, top = (new_w - spec.crop) // 2, (new_h - spec.crop) // 2
    sx, sy = w / new_w, h / new_h
    box = (left * sx, top * sy, (left + spec.crop) * sx, (top + spec.crop) * sy)
    return img.resize((spec.crop, spec.crop), Image.Resampling.BILINEAR, box=box, reducing_gap=None)


@lru_cache(maxsize=8)
def _levels(mean: tuple[float, float, float], std: tuple[float, float, float]) -> np.ndarray:
    """(3, 256) float32: each channel's normalised value of every 8-bit level, the same float32 arithmetic as
    (level / 255 - mean) / std on the image."""
    levels = np.arange(256, dtype=np.float32)[:, None] / 255.0
    return np.ascontiguousarray(((levels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).T)


def to_tensor(img: Image.Image, spec: Preprocess, out: np.ndarray | None = None) -> np.ndarray:
    """HWC uint8 RGB image to normalised CHW float32 (into `out` when given); mean/std are in the model's
    channel order. One table lookup per value instead of a float pass per operation."""
    out = np.empty(spec.shape, np.float32) if out is None else out
    levels = _levels(spec.mean, spec.std)
    planes = np.asarray(img).transpose(2, 0, 1)
    for c, plane in enumerate(planes[::-1] if spec.channel_order == "BGR" else planes):
        np.take(levels[c], plane, out=out[c], mode="clip")
    return out


def preprocess(data: bytes, spec: Preprocess, draft: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Bytes to model input (3, crop, crop) float32, written into `out` when given (a batch's row, no copy);
    raises DecodeError for bad images. draft: see `decode`."""
    try:
        return to_tensor(resize_crop(decode(data, spec.max_pixels, (spec.resize,) * 2 if draft else None), spec),
                         spec, out)
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated data surfaces only during resize, as any type
        raise DecodeError(corrupt(exc)) from None
