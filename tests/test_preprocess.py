"""Preprocessing checked against references computed independently of batchscore.preprocess."""

import io

import numpy as np
import pytest
from PIL import Image

from batchscore.preprocess import DecodeError, Preprocess, decode, preprocess

SPEC = Preprocess()
MEAN, STD = np.array(SPEC.mean), np.array(SPEC.std)


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_constant_colour_normalises_per_channel() -> None:
    out = preprocess(encode(Image.new("RGB", (500, 300), (200, 100, 50))), SPEC)
    expected = (np.array([200, 100, 50]) / 255 - MEAN) / STD
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    np.testing.assert_allclose(out.reshape(3, -1).mean(1), expected, atol=1e-5)
    np.testing.assert_allclose(out.reshape(3, -1).std(1), 0, atol=1e-5)


def test_geometry_is_shorter_side_resize_then_centre_crop() -> None:
    # 600x300 landscape: resized to 512x256, the centre 224 columns come from source columns 81..519.
    # Left third black, middle white, right third black: the crop must be white in the middle and
    # black only near its edges (source column 200 maps to 200*256/300-144 = 26.7 in the crop).
    arr = np.zeros((300, 600, 3), np.uint8)
    arr[:, 200:400] = 255
    out = preprocess(encode(Image.fromarray(arr)), SPEC)
    row = out[0, 112] * STD[0] + MEAN[0]  # back to [0, 1]
    assert row[112] == pytest.approx(1.0, abs=1e-4)
    assert row[:24].max() < 0.05 and row[-24:].max() < 0.05
    assert row[30:194].min() > 0.95
    # Independent reference: the same resize and crop boxes done by hand on the Pillow image.
    ref = Image.fromarray(arr).resize((512, 256), Image.Resampling.BILINEAR).crop((144, 16, 368, 240))
    ref = (np.asarray(ref, np.float32) / 255 - MEAN) / STD
    np.testing.assert_allclose(out, ref.transpose(2, 0, 1), atol=1e-5)


def test_exif_orientation_is_applied() -> None:
    arr = np.zeros((300, 400, 3), np.uint8)
    arr[:150] = 255  # top half white as stored
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # stored rotated: display needs a 90° clockwise turn
    turned = preprocess(encode(img, "JPEG", exif=exif.tobytes(), quality=95), SPEC)
    plain = preprocess(encode(Image.fromarray(np.ascontiguousarray(np.rot90(arr, -1))), "JPEG", quality=95), SPEC)
    np.testing.assert_allclose(turned, plain, atol=0.1)
    assert turned[0, :, -10].mean() > turned[0, :, 10].mean()  # white ended up on the right


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA", "I;16"])
def test_any_mode_becomes_rgb(mode: str) -> None:
    img = Image.new("RGB", (320, 240), (10, 200, 30)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    out = preprocess(encode(img, fmt), SPEC)
    assert out.shape == (3, 224, 224) and np.isfinite(out).all()


def test_transparent_pixels_composite_on_white() -> None:
    img = decode(encode(Image.new("RGBA", (50, 50), (0, 0, 0, 0))))
    assert img.mode == "RGB" and img.getpixel((10, 10)) == (255, 255, 255)


def test_bgr_order_swaps_channels() -> None:
    data = encode(Image.new("RGB", (300, 300), (255, 0, 0)))
    rgb = preprocess(data, SPEC)
    bgr = preprocess(data, Preprocess(channel_order="BGR", mean=SPEC.mean[::-1], std=SPEC.std[::-1]))
    np.testing.assert_allclose(bgr, rgb[::-1], atol=1e-6)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"this is a text file, not a picture", "not an image"),
])
def test_bad_bytes_raise_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        preprocess(data, SPEC)


def test_truncated_jpeg_and_pixel_limit() -> None:
    rng = np.random.default_rng(0)
    jpeg = encode(Image.fromarray(rng.integers(0, 255, (400, 500, 3), np.uint8)), "JPEG")
    with pytest.raises(DecodeError, match="corrupt"):
        preprocess(jpeg[: len(jpeg) // 2], SPEC)
    big = encode(Image.new("L", (3000, 2000)))
    with pytest.raises(DecodeError, match="too large|decompression bomb"):
        preprocess(big, Preprocess(max_pixels=1_000_000))
