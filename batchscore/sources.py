"""Sources: turn the job's inputs into a sorted list of keyed items and read their bytes.

An `Item` is small and picklable (it names where the bytes are, not the bytes), so decode
workers read in parallel. Tar members are located once by offset and read with a seek, never
extracted; HDF5 sources hold encoded image bytes, one per row.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
HDF5_EXTENSIONS = frozenset({".h5", ".hdf5"})
#: the most bytes read as one image (file or tar member): above what an 8- or 16-bit RGBA image at Pillow's pixel
#: limit takes uncompressed; a larger one (or a link to /dev/zero) is an error row, not an unbounded read
MAX_IMAGE_BYTES = 1 << 30
#: tar and HDF5 files one Reader keeps open (least recently used closed first): items come in key order, shard
#: after shard, so a few suffice, and thousands of shards stay under the open-file limit
OPEN_FILES = 8
#: how gzip, bzip2, xz and zstd files start: a .tar that starts so is compressed, not damaged
COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")


class SourceError(ValueError):
    """An input that cannot be listed at all (missing, unknown type); fails the job at start."""


class ItemError(OSError):
    """One item that cannot be read (not a regular file, too large, listed as bad); its error row says why."""


@dataclass(frozen=True)
class Item:
    """One image: its stable key and where its bytes live.

    kind: "file" (path), "tar" (path, offset, size), "h5" (path, dataset, index) or "bad"
    (listed but unreadable by construction, e.g. an unsafe tar member; `error` says why).
    Keys and paths are str; a name whose bytes are not UTF-8 is surrogate-escaped (os.fsdecode), as Python's os
    functions give it (keys.py: HDF5 files store the bytes).
    """

    key: str
    kind: str
    path: str
    offset: int = 0
    size: int = 0
    dataset: str = ""
    error: str = ""


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _unsafe_member(name: str) -> bool:
    return name.startswith(("/", "\\")) or ".." in PurePosixPath(name.replace("\\", "/")).parts


def _tar_item(member: tarfile.TarInfo, key: str, path: Path, regular: dict[str, tarfile.TarInfo],
              size: int) -> Item:
    """The item of one tar member with an image name: its bytes by offset, or "bad" with the reason."""
    bad = None
    if _unsafe_member(member.name):
        bad = "unsafe path in tar (absolute or '..')"
    elif member.islnk():  # a hard link names an earlier member: its bytes are that member's
        target = regular.get(member.linkname)
        if target is None:
            bad = f"tar hard link to {member.linkname!r}, which is not a file earlier in the tar"
        else:
            member = target
    elif member.issym():
        bad = f"tar symbolic link to {member.linkname!r}; links in tars are not followed"
    elif not member.isfile():
        bad = "not a regular file in the tar"
    if bad is None and member.size > MAX_IMAGE_BYTES:
        bad = f"too large ({member.size} bytes > {MAX_IMAGE_BYTES})"
    if bad is None and member.offset_data + member.size > size:
        bad = (f"truncated tar: the member's data is cut off ({max(0, size - member.offset_data)} of "
               f"{member.size} bytes in the file)")
    if bad:
        return Item(key, "bad", str(path), error=bad)
    return Item(key, "tar", str(path), member.offset_data, member.size)


def tar_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """A tar's members up to where it is cut or damaged (where tarfile raises ReadError after the first)."""
    try:
        yield from tar
    except tarfile.ReadError:
        return


def list_tar(path: Path, key_prefix: str, skipped: Counter | None = None) -> list[Item]:
    """Members of an uncompressed tar with image names, by offset; unsafe names, links that cannot be read and
    members a truncated tar cuts off become "bad" items. A cut or damaged header, where no member can be
    named, counts in `skipped["tar_damaged_tails"]`."""
    items = []
    if not path.is_file():
        raise SourceError(f"{path}: not a regular file; give plain .tar shards")
    size = path.stat().st_size
    try:
        with tarfile.open(path, mode="r:") as tar:
            regular: dict[str, tarfile.TarInfo] = {}
            for member in tar_members(tar):
                if member.isfile():
                    regular[member.name] = member
                if not member.isdir() and _is_image(member.name):
                    items.append(_tar_item(member, f"{key_prefix}:{member.name}", path, regular, size))
            damaged = False
            if tar.offset < size:  # stopped before the end: at a cut or bad header, or the end-of-archive zeros
                tar.fileobj.seek(tar.offset)
                damaged = any(tar.fileobj.read(tarfile.BLOCKSIZE))
            if damaged and skipped is not None:
                skipped["tar_damaged_tails"] += 1
    except tarfile.ReadError as exc:
        with open(path, "rb") as f:
            compressed = f.read(6).startswith(COMPRESSED_MAGIC)
        if compressed:
            raise SourceError(f"{path}: a compressed tar; compressed tars are not supported, use plain .tar "
                              "shards") from None
        raise SourceError(f"{path}: not a readable tar ({exc}); it is truncated before its first member or not "
                          "a tar") from None
    return items


def list_hdf5(path: Path, dataset: str, key_prefix: str) -> list[Item]:
    """Rows of an HDF5 dataset of encoded images; keys from a sibling 'keys' dataset when present (UTF-8)."""
    import h5py

    if not path.is_file():  # HDF5 would block opening a FIFO
        raise SourceError(f"{path}: not a regular file; give an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            if dataset not in f:
                raise SourceError(f"{path}: no dataset {dataset!r} (set hdf5_dataset in the job file); "
                                  f"found: {', '.join(f.keys()) or 'nothing'}")
            images, keys = f[dataset], f.get("keys")
            for name, obj in ((dataset, images), ("keys", keys)):
                if obj is not None and (not isinstance(obj, h5py.Dataset) or obj.ndim != 1 and name == "keys"
                                        or obj.ndim == 0):
                    what = "a group" if not isinstance(obj, h5py.Dataset) else f"of shape {obj.shape}"
                    raise SourceError(f"{path}: {name!r} is {what}; it must be a dataset with one row per image")
            n = len(images)
            names = None if keys is None else [_key_text(k, path, i) for i, k in enumerate(keys[:])]
    except SourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py raises OSError, KeyError, TypeError on damaged files
        raise SourceError(f"{path}: cannot read as HDF5: {type(exc).__name__}: {exc}") from None
    if names is not None and len(names) != n:
        raise SourceError(f"{path}: 'keys' has {len(names)} rows but {dataset!r} has {n}")
    return [Item(f"{key_prefix}:{names[i] if names else f'{i:09d}'}", "h5", str(path), offset=i, dataset=dataset)
            for i in range(n)]


def _key_text(key: object, path: Path, row: int) -> str:
    if not isinstance(key, bytes):
        return str(key)
    try:
        return key.decode()
    except UnicodeDecodeError:
        raise SourceError(f"{path}: 'keys' row {row} is not UTF-8 ({key[:40]!r}); store the keys as UTF-8 "
                          "strings") from None


def list_file_lines(path: Path) -> list[bytes]:
    """A list file's entries as bytes: lines stripped, blank lines and '#' comments left out."""
    if not path.is_file():
        raise SourceError(f"{path}: not a regular file; give a text file of image paths")
    return [line for line in (raw.strip() for raw in path.read_bytes().splitlines())
            if line and not line.startswith(b"#")]


def list_file_list(path: Path) -> Iterator[Item]:
    """A text file of image paths, one per line (relative to the list file's folder); '#' comments.

    Lines are read as file names are: bytes that are not UTF-8 are kept surrogate-escaped, so they name the
    file and its key as a folder listing would."""
    base = path.parent
    for raw in list_file_lines(path):
        line = raw.decode("utf-8", "surrogateescape")
        yield Item(line, "file", os.path.join(base, line))


def list_dir(root: Path, skipped: Counter | None = None) -> list[Item]:
    """Images under a folder, recursively; plain tar shards found there are expanded in place.

    Every folder is listed once, under the first path that reaches it: real sub-folders before symlinked ones,
    each level in name order, so a symlink loop or a second link to a folder adds nothing (counted in
    `skipped["repeated_folders"]`); folders whose names start with "." are not walked (`skipped["hidden_folders"]`).
    A folder that cannot be listed is a "bad" item keyed by its path and "/"."""
    skipped = Counter() if skipped is None else skipped
    items: list[Item] = []
    seen: set[tuple[int, int]] = set()
    folders: list[tuple[str, str]] = [(str(root), "")]
    links: list[tuple[str, str]] = []
    while folders or links:
        folder, rel = folders.pop() if folders else links.pop(0)
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                skipped["repeated_folders"] += 1
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name, reverse=True)
        except OSError as exc:
            if not rel:
                raise SourceError(f"input {root}: cannot list folder: {exc.strerror or exc}") from None
            items.append(Item(rel, "bad", folder, error=f"cannot list folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            key = rel + entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if entry.name.startswith("."):  # .git, .parts, .snapshot ...: not walked, but counted
                    skipped["hidden_folders"] += 1
                else:
                    (links if entry.is_symlink() else folders).append((entry.path, key + "/"))
            elif _is_image(entry.name):
                items.append(Item(key, "file", entry.path))
            elif entry.name.endswith(".tar"):
                try:
                    items.extend(list_tar(Path(entry.path), key, skipped))
                except SourceError as exc:
                    items.append(Item(key, "bad", entry.path, error=str(exc)))
    return items


def iter_items(inputs: tuple[Path, ...] | list[Path], hdf5_dataset: str = "images",
               skipped: Counter | None = None) -> Iterator[Item]:
    """All items of all inputs, input by input (not sorted): what `list_items` sorts, or a caller keeps compactly.
    `skipped` counts what was passed over, by reason (see list_dir and list_tar)."""
    for path in inputs:
        if not path.exists():
            raise SourceError(f"input not found: {path}")
        suffix = path.suffix.lower()
        if path.is_dir():
            yield from list_dir(path, skipped)
        elif suffix == ".tar":
            yield from list_tar(path, path.name, skipped)
        elif suffix in HDF5_EXTENSIONS:
            yield from list_hdf5(path, hdf5_dataset, path.name)
        elif suffix in LIST_EXTENSIONS:
            yield from list_file_list(path)
        elif _is_image(path.name):
            yield Item(path.name, "file", str(path))
        else:
            raise SourceError(f"input {path}: unknown type; give a folder, a .tar, a .h5/.hdf5, "
                              f"a list file ({', '.join(sorted(LIST_EXTENSIONS))}) or an image")


def list_items(inputs: tuple[Path, ...] | list[Path], hdf5_dataset: str = "images",
               skipped: Counter | None = None) -> list[Item]:
    """All items of all inputs in global (sorted key) order; duplicate keys are an error. `skipped`: as iter_items."""
    items = sorted(iter_items(inputs, hdf5_dataset, skipped), key=lambda it: it.key)
    for a, b in zip(items, items[1:]):
        if a.key == b.key:
            raise SourceError(f"duplicate key {a.key!r} in the inputs; each image must appear once")
    return items


def shard(items: list, rank: int, size: int) -> list:
    """Rank `rank`'s contiguous share of `items`, balanced to within one item."""
    base, extra = divmod(len(items), size)
    start = rank * base + min(rank, extra)
    return items[start:start + base + (1 if rank < extra else 0)]


class Reader:
    """Reads item bytes, keeping up to OPEN_FILES tar and HDF5 handles open (one reader per worker)."""

    def __init__(self) -> None:
        self._files: OrderedDict[str, object] = OrderedDict()

    def read(self, item: Item) -> bytes:
        """The encoded bytes of one item; OSError (ItemError for what is not read at all) on failure."""
        if item.kind == "file":
            return read_file(item.path)
        if item.kind == "tar":
            if item.size > MAX_IMAGE_BYTES:
                raise ItemError(f"too large ({item.size} bytes > {MAX_IMAGE_BYTES})")
            f = self._open(item.path)
            f.seek(item.offset)
            data = f.read(item.size)
            if len(data) != item.size:
                raise ItemError(f"truncated tar: member cut off ({len(data)} of {item.size} bytes)")
            return data
        if item.kind == "h5":
            dset = self._open(item.path)[item.dataset]
            return bytes(memoryview(dset[item.offset]))
        raise ItemError(item.error or f"unreadable item kind {item.kind!r}")

    def read_span(self, path: str, offset: int, size: int) -> bytes:
        """`size` bytes of a tar from `offset` in one sequential read (fewer at the end of a truncated file)."""
        f = self._open(path)
        f.seek(offset)
        return f.read(size)

    def _open(self, path: str):  # noqa: ANN202 - file or h5py.File
        handle = self._files.get(path)
        if handle is None:
            while len(self._files) >= OPEN_FILES:
                self._files.popitem(last=False)[1].close()
            if path.endswith(".tar"):
                handle = open(path, "rb", buffering=1 << 20)
            else:
                import h5py
                handle = h5py.File(path, "r")
            self._files[path] = handle
        else:
            self._files.move_to_end(path)
        return handle

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()


def read_file(path: str, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """A regular file's bytes, at most `limit`: a FIFO, device or socket is an ItemError, never a blocked or
    endless read (opened non-blocking, checked with fstat before reading)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ItemError(f"not a regular file ({_file_type(st.st_mode)})")
        if st.st_size > limit:
            raise ItemError(f"too large ({st.st_size} bytes > {limit})")
        # sized by fstat: a read of `limit` bytes would allocate that much for every image; one byte more tells a
        # file that grew since. A short read (a signal, some network filesystems) or a grown file is read on to
        # its end or past the limit.
        data = f.read(st.st_size + 1)
        while len(data) != st.st_size and len(data) <= limit:
            # the rest fstat promised (and one byte), or, for a file that grew, up to the limit
            more = f.read((st.st_size if len(data) < st.st_size else limit) + 1 - len(data))
            if not more:
                break
            data += more
    if len(data) > limit:
        raise ItemError(f"too large (more than {limit} bytes)")
    return data


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a file"
