"""A JPEG made in memory, so decoders are tried without any file (the GPU decoder's probe, `batchscore doctor`)."""

from __future__ import annotations

import io

#: the probe image's colour
PROBE_RGB = (200, 40, 60)


def tiny_jpeg(size: int = 16) -> bytes:
    """A size×size solid PROBE_RGB JPEG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), PROBE_RGB).save(buf, "JPEG")
    return buf.getvalue()
