"""What we need to know about an ONNX model before any rank loads it: I/O, metadata, identity."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import onnx


class ModelError(ValueError):
    """A model file that cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    input_name: str
    input_shape: tuple[int | str, ...]
    outputs: dict[str, tuple[int | str, ...]]
    metadata: dict[str, str] = field(default_factory=dict)
    external_files: tuple[Path, ...] = ()

    @property
    def num_classes(self) -> int | None:
        shape = next(iter(self.outputs.values()))
        return shape[-1] if shape and isinstance(shape[-1], int) else None


def _dims(value_info: onnx.ValueInfoProto) -> tuple[int | str, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                 for d in value_info.type.tensor_type.shape.dim)


def _stamp(path: Path) -> tuple[str, int, int]:
    """The file as it is now (path, modification time, size): what the memoised readers below are keyed by."""
    if not path.is_file():
        raise ModelError(f"model not found: {path} (set 'model' in the job file or pass --model)")
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


def inspect_model(path: Path) -> ModelInfo:
    """Read the graph's inputs/outputs and metadata without loading weights.

    Memoised per file version: planning, the engine and its loader's cache key each ask, and a large model's
    graph takes a noticeable part of a second to parse."""
    return _inspect(*_stamp(Path(path)))


@lru_cache(maxsize=8)
def _inspect(name: str, mtime_ns: int, size: int) -> ModelInfo:
    path = Path(name)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for non-ONNX files
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    initializer_names = {init.name for init in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializer_names]
    if len(inputs) != 1:
        raise ModelError(f"{path}: expected one image input, found {[i.name for i in inputs]}")
    externals = sorted({path.parent / e.value for init in proto.graph.initializer
                        for e in init.external_data if e.key == "location"})
    return ModelInfo(
        path=path,
        input_name=inputs[0].name,
        input_shape=_dims(inputs[0]),
        outputs={o.name: _dims(o) for o in proto.graph.output},
        metadata={p.key: p.value for p in proto.metadata_props},
        external_files=tuple(externals),
    )


def class_names(path: Path | None, metadata: dict[str, str]) -> list[str]:
    """Class names from a classes file (one per line), else the model's `classes` metadata, else none."""
    if path is not None:
        if not path.is_file():
            raise ModelError(f"classes file not found: {path}")
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return metadata["classes"].split(",") if "classes" in metadata else []


def model_sha256(path: Path, info: ModelInfo | None = None) -> str:
    """SHA-256 over the model file and its external-data files, so a change of weights changes it.

    Memoised per version of those files: planning and the engine's cache keys ask for it in one process."""
    info = info or inspect_model(path)
    return _sha256(tuple(_stamp(Path(file)) for file in (path, *info.external_files)))


@lru_cache(maxsize=8)
def _sha256(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for file, _, _ in files:
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
