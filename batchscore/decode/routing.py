"""Which files the GPU decoders may take: a JPEG header router, run on the read workers before the bytes reach
the GPU decoder's thread.

Per image: bytes that a GPU decoder must not or cannot take go to the CPU path (Pillow), which also names the
error of a bad image:
- not a JPEG (PNG, WebP, ...), CMYK/YCCK, RGB-coded, 12-bit, lossless or arithmetic-coded JPEGs;
- an EXIF (or XMP) orientation other than 1 (the CPU path applies it as Pillow does);
- no end-of-image marker (a truncated file, which a GPU decoder may fill silently), too many pixels.
"""

from __future__ import annotations

import re

from ..preprocess import DEFAULT_MAX_PIXELS

#: SOF markers nvJPEG decodes (baseline, extended sequential, progressive Huffman); other SOFs go to the CPU.
_SOF_NVJPEG = frozenset({0xC0, 0xC1, 0xC2})
_SOF_OTHER = frozenset({0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_XMP = b"http://ns.adobe.com/xap/1.0/\0"
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(?:="|>)([0-9])')  # as Pillow's getexif() reads it


def exif_orientation(tiff: bytes) -> int | None:
    """The Orientation tag (0x0112) of IFD0 of an EXIF block (from its TIFF header on); None if absent."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    ifd = int.from_bytes(tiff[4:8], order)
    for k in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * k:ifd + 14 + 12 * k]
        if len(entry) < 12:
            break
        if int.from_bytes(entry[:2], order) == 0x0112:
            return int.from_bytes(entry[8:10], order)
    return None


def gpu_route(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """"" when nvJPEG may decode `data` to what Pillow gives; else why the CPU path must take it.

    Reads only the JPEG headers (markers up to the first scan), so it costs microseconds.
    """
    if data[:3] != b"\xff\xd8\xff":
        return "not a JPEG"
    pos, frame, orientation, xmp_orientation, adobe_transform = 2, None, None, None, None
    tables: set[int] = set()  # quantization tables defined before the first scan
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return "corrupt JPEG header"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker == 0xDA:  # start of scan: the headers are over
            break
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        body = data[pos + 4:end]
        if marker == 0xE1 and body.startswith(b"Exif\0\0") and orientation is None:
            orientation = exif_orientation(body[6:])
        elif marker == 0xE1 and body.startswith(_XMP) and (match := _XMP_ORIENTATION.search(body)):
            xmp_orientation = int(match[1])
        elif marker == 0xEE and body.startswith(b"Adobe") and len(body) >= 12:
            adobe_transform = body[11]
        elif marker == 0xDB:  # DQT: one or more tables, each (precision << 4 | id) then 64 or 128 bytes
            i = 0
            while i < len(body):
                tables.add(body[i] & 15)
                i += 1 + 64 * (1 + (body[i] >> 4))
        elif marker in _SOF_OTHER:
            return f"JPEG process SOF{marker - 0xC0} (lossless or arithmetic coding)"
        elif marker in _SOF_NVJPEG:
            if len(body) < 6:
                return "corrupt JPEG header"
            frame = (body[0], int.from_bytes(body[1:3], "big"), int.from_bytes(body[3:5], "big"), body[5],
                     [bytes(body[6 + 3 * c:9 + 3 * c]) for c in range(body[5])])
        pos = end
    if frame is None:
        return "corrupt JPEG header"
    precision, height, width, components, specs = frame
    if any(len(c) < 3 or not (1 <= c[1] >> 4 <= 4 and 1 <= c[1] & 15 <= 4) or c[2] not in tables for c in specs):
        return "corrupt JPEG header"  # bad sampling factors or an undefined table: Pillow fails it, nvJPEG may not
    if precision != 8:
        return f"{precision}-bit JPEG"
    if components not in (1, 3):
        return f"{components}-component JPEG (CMYK or YCCK)"
    if components == 3 and (adobe_transform == 0 or bytes(c[0] for c in specs) == b"RGB"):
        return "RGB-coded JPEG (not YCbCr)"
    if width * height > max_pixels:
        return "too many pixels"
    if (orientation if orientation is not None else xmp_orientation) not in (None, 1):
        return "EXIF orientation"
    if not data.rstrip(b"\0\r\n ").endswith(b"\xff\xd9"):
        return "no end-of-image marker (truncated?)"
    return ""
