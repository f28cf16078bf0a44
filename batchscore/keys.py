"""Keys (and error texts) in HDF5 files: stored as the bytes of the name, read back as the same str.

A file or tar member name whose bytes are not UTF-8 reaches Python surrogate-escaped (os.fsdecode, tarfile);
an HDF5 UTF-8 string cannot hold that, so every string is stored as its bytes (str.encode("utf-8",
"surrogateescape")): a UTF-8 name as before, any other name byte for byte, never an error at commit.
"""

from __future__ import annotations

from collections.abc import Iterable

import h5py
import numpy as np

STR = h5py.string_dtype("utf-8")


def _bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name gives (free text only): kept readable, escaped
        return text.encode("utf-8", "backslashreplace")


def encode_strings(values: Iterable[str]) -> np.ndarray:
    """`values` as an object array of bytes for a STR dataset."""
    out = np.empty(len(values := list(values)), dtype=object)
    out[:] = [_bytes(v) for v in values]
    return out


def decode_strings(dset: h5py.Dataset) -> np.ndarray:
    """A STR dataset's strings as str, names that are not UTF-8 surrogate-escaped as they were listed."""
    return dset.asstr(errors="surrogateescape")[()]
