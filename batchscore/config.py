"""Job files: TOML in, a validated `Job` out.

Every key is checked against the schema below, so a typo or a wrong type fails at start with
the key's name instead of an hour into the queue. Relative paths in a job file are resolved
against the job file's folder; paths given on the command line against the current directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .preprocess import Preprocess

BACKENDS = ("auto", "onnxruntime", "torch", "tensorrt")
COMPILE_MODES = ("auto", "eager", "cudagraph", "compiled")
#: batch_size = 0 and compile = "auto": what a job that sets neither runs with, on a GPU and on the CPU
GPU_BATCH, CPU_BATCH = 256, 32
PRECISIONS = ("fp32", "fp16", "int8")
CALIB_METHODS = ("entropy", "percentile", "minmax")
DECODE_MODES = ("auto", "cpu", "gpu")
WORKER_KINDS = ("auto", "process", "thread")  # how CPU decode workers run (decode/procs.py)
GPU_DECODERS = ("auto", "nvimgcodec", "torchvision")
#: job keys whose value must be one of a fixed list
CHOICES = {"backend": BACKENDS, "precision": PRECISIONS, "calib_method": CALIB_METHODS,
           "compile": COMPILE_MODES, "decode": DECODE_MODES, "gpu_decoder": GPU_DECODERS,
           "worker_kind": WORKER_KINDS}
#: settings that were removed, and what to do instead: a job that still has one fails at start (exit 2) saying so
REMOVED = {
    "gpu_decode_share": "gpu_decode_share was removed: decode = \"gpu\" decodes every image on the GPU (and "
                        "\"cpu\" on the CPU workers); delete the key",
    "gpu_decode_threads": "gpu_decode_threads was removed: the GPU decoder runs one thread a rank; delete the key",
}
#: removed values of a choice key, and what to use instead
REMOVED_VALUES = {
    ("decode", "hybrid"): "decode = \"hybrid\" was removed: decode = \"gpu\" decodes every image on the GPU, "
                          "which was faster; set decode = \"gpu\" (or \"auto\")",
}


class ConfigError(ValueError):
    """A job that cannot run as written; the message names the key and what to do."""


@dataclass(frozen=True)
class Job:
    """Everything one scoring run needs; built from a TOML file plus command-line overrides."""

    input: tuple[Path, ...]
    model: Path
    output: Path
    batch_size: int = 0  # 0: GPU_BATCH on a GPU, CPU_BATCH on the CPU (Job.settled)
    top_k: int = 5
    backend: str = "auto"
    precision: str = "fp32"
    save_outputs: tuple[str, ...] = ()
    classes: Path | None = None
    labels: Path | None = None
    hdf5_dataset: str = "images"
    workers: int = 0
    worker_kind: str = "auto"
    threads: int = 0
    commit_every: int = 8
    overwrite: bool = False
    decode_draft: bool = False
    incremental: bool = False
    manifest_hash: bool = False
    preprocess: Preprocess = field(default_factory=Preprocess)
    calib_input: tuple[Path, ...] = ()
    calib_images: int = 300
    calib_method: str = "entropy"
    gate_images: int = 200
    max_top1_drop: float = 1.0
    cache_dir: Path | None = None
    share_gpus: bool = False
    compile: str = "auto"  # auto: cudagraph on a GPU, eager on the CPU (Job.settled)
    decode: str = "auto"
    gpu_decoder: str = "auto"
    source: Path | None = None

    def with_overrides(self, **values: Any) -> "Job":
        """A copy with the given (already typed) values replaced; None means 'not given'."""
        given = {k: v for k, v in values.items() if v is not None}
        job = dataclasses.replace(self, **given)
        job.validate()
        return job

    def settled(self, gpu: bool) -> "Job":
        """This job with its automatic batch size and compile mode decided for where its engine runs.

        On a GPU a small eager batch leaves the GPU waiting on kernel launches, so the defaults there are large
        batches replayed as CUDA graphs; on the CPU, modest batches, eager."""
        compile = ("cudagraph" if gpu else "eager") if self.compile == "auto" else self.compile
        return dataclasses.replace(self, batch_size=self.batch_size or (GPU_BATCH if gpu else CPU_BATCH),
                                   compile=compile)

    def validate(self) -> None:
        """Check values that types alone cannot: ranges and choices."""
        for key, choices in CHOICES.items():
            value = getattr(self, key)
            if (key, value) in REMOVED_VALUES:
                raise ConfigError(REMOVED_VALUES[key, value])
            if value not in choices:
                raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
        if self.batch_size < 0:
            raise ConfigError(f"batch_size must be >= 1, or 0 to size it for the device; got {self.batch_size}")
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")
        if self.workers < 0 or self.threads < 0:
            raise ConfigError("workers and threads must be >= 0 (0 = size from the cores this rank owns)")
        if self.commit_every < 1:
            raise ConfigError(f"commit_every must be >= 1 batch, got {self.commit_every}")
        if not self.input:
            raise ConfigError("input is empty: give a folder, a .tar, a .h5 or a list file")
        if self.calib_images < 1 or self.gate_images < 1:
            raise ConfigError("calib_images and gate_images must be >= 1")
        if self.max_top1_drop < 0:
            raise ConfigError(f"max_top1_drop must be >= 0 percentage points, got {self.max_top1_drop}")


# key -> (python types accepted, converter from TOML value)
_PATH = (str,)
_SCHEMA: dict[str, tuple[tuple[type, ...], str]] = {
    "input": ((str, list), "paths"),
    "model": (_PATH, "path"),
    "output": (_PATH, "path"),
    "batch_size": ((int,), "int"),
    "top_k": ((int,), "int"),
    "backend": ((str,), "str"),
    "precision": ((str,), "str"),
    "save_outputs": ((list, bool), "names"),
    "classes": (_PATH, "path"),
    "labels": (_PATH, "path"),
    "hdf5_dataset": ((str,), "str"),
    "workers": ((int,), "int"),
    "worker_kind": ((str,), "str"),
    "threads": ((int,), "int"),
    "commit_every": ((int,), "int"),
    "overwrite": ((bool,), "bool"),
    "decode_draft": ((bool,), "bool"),
    "incremental": ((bool,), "bool"),
    "manifest_hash": ((bool,), "bool"),
    "calib_input": ((str, list), "paths"),
    "calib_images": ((int,), "int"),
    "calib_method": ((str,), "str"),
    "gate_images": ((int,), "int"),
    "max_top1_drop": ((float, int), "float"),
    "cache_dir": (_PATH, "path"),
    "share_gpus": ((bool,), "bool"),
    "compile": ((str,), "str"),
    "decode": ((str,), "str"),
    "gpu_decoder": ((str,), "str"),
}
_PREPROCESS_SCHEMA: dict[str, tuple[type, ...]] = {
    "resize": (int,),
    "crop": (int,),
    "mean": (list,),
    "std": (list,),
    "channel_order": (str,),
    "max_pixels": (int,),
}
REQUIRED = ("input", "model", "output")

#: one line per job key, what it means; docs/reference/job-file.md is generated from these and the schema
#: (tools/gen_reference.py), so a new key needs a line here.
KEY_HELP: dict[str, str] = {
    "input": "images to score: a folder (recursive), an uncompressed .tar, a .h5 of encoded images, a list file "
             "(.txt/.lst), or an array of them",
    "model": "the ONNX model (float32 NCHW input, dynamic batch axis); for fp16/int8 the FP32 source",
    "output": "results folder: scores.h5, summary.json, and the part files of an unfinished run",
    "batch_size": f"images per inference call; 0: {GPU_BATCH} where the engine runs on a GPU, {CPU_BATCH} on the CPU",
    "top_k": "classes kept per image, best first",
    "backend": "inference engine: auto picks torch on a GPU, else onnxruntime; tensorrt runs only when named "
               "and is unverified (never executed on the project's machines)",
    "precision": "fp32, or an fp16/int8 variant built from the model on first use and cached",
    "save_outputs": "model outputs to keep in full in scores.h5 (outputs/NAME); true keeps all",
    "classes": "text file of class names, one a line, stored with the scores",
    "labels": "CSV of key,label; the int8 accuracy gate and `accuracy` then measure labelled top-1",
    "hdf5_dataset": "dataset of encoded image bytes in .h5 inputs",
    "workers": "CPU decode workers per rank; 0 sizes them from the rank's cores",
    "worker_kind": "CPU decode workers as processes or threads; auto: processes from 4 cores a rank",
    "threads": "inference threads per rank; 0 sizes them from the rank's cores",
    "commit_every": "batches per committed part file: the resume granularity",
    "overwrite": "replace an existing result or discard an unfinished run in output",
    "decode_draft": "let Pillow decode large JPEGs at a reduced scale (faster, pixels differ slightly)",
    "incremental": "score only images new or changed since the last incremental run into output/runs/TIME/",
    "manifest_hash": "incremental: a file whose size or mtime changed is rescored only if its SHA-256 changed",
    "calib_input": "int8: calibrate on these paths instead of the job's input",
    "calib_images": "int8: images in the seeded calibration sample (at most half of the input)",
    "calib_method": "int8 calibration method",
    "gate_images": "held-out images the accuracy gate compares against FP32 before scoring",
    "max_top1_drop": "top-1 percentage points an fp16/int8 variant may lose against FP32, else exit 2",
    "cache_dir": "engine and variant cache (default: $BATCHSCORE_CACHE or ~/.cache/batchscore for engines, "
                 "output/.variants for variants)",
    "share_gpus": "allow more than one rank of a node on one GPU",
    "compile": "torch backend: eager, CUDA graphs, or an AOTInductor package built once per node and cached; "
               "auto: CUDA graphs on a GPU, eager on the CPU",
    "decode": "where images are decoded: cpu, gpu (torch/tensorrt backends), auto (gpu when it works here)",
    "gpu_decoder": "GPU decode library: nvimgcodec (hardware JPEG decoder, then CUDA, through its C API), "
                   "torchvision (nvJPEG, the fallback), auto",
    "preprocess.resize": "shorter side after resizing (antialiased bilinear)",
    "preprocess.crop": "side of the centre crop",
    "preprocess.mean": "per-channel mean subtracted, in the model's channel order",
    "preprocess.std": "per-channel standard deviation divided by",
    "preprocess.channel_order": "RGB or BGR",
    "preprocess.max_pixels": "larger images are refused as decompression bombs (error rows)",
}


def differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    """The settings that differ between two run fingerprints, as "key: old -> new" (long values shortened)."""
    def short(value: Any) -> str:
        text = "(none)" if value is None else str(value)
        return text if len(text) <= 40 else text[:37] + "..."

    keys = [k for k in dict.fromkeys([*before, *now]) if before.get(k) != now.get(k)]
    return "; ".join(f"{k}: {short(before.get(k))} -> {short(now.get(k))}" for k in keys)


def _type_name(types: tuple[type, ...]) -> str:
    names = {"str": "string", "list": "array", "int": "integer", "bool": "boolean", "float": "number"}
    return " or ".join(names[t.__name__] for t in types)


def _check_type(key: str, value: Any, types: tuple[type, ...]) -> None:
    # bool is a subclass of int in Python; TOML keeps them apart, so do we.
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        raise ConfigError(f"{key}: expected {_type_name(types)}, got {type(value).__name__} {value!r}")


def _convert(key: str, value: Any, kind: str, base: Path) -> Any:
    if kind == "path":
        return (base / value).resolve() if not Path(value).is_absolute() else Path(value)
    if kind == "paths":
        values = [value] if isinstance(value, str) else value
        if not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{key}: expected a path or an array of paths")
        return tuple(_convert(key, v, "path", base) for v in values)
    if kind == "float":
        return float(value)
    if kind == "names":
        if value is True:
            return ("*",)
        if value is False:
            return ()
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected an array of output names (or true for all)")
        return tuple(value)
    return value


def _unknown(key: str, known: list[str]) -> str:
    """ "unknown key; did you mean batch_size?" for the nearest known key (difflib), else the known keys."""
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"unknown key; did you mean {near[0]}?" if near else f"unknown key; known keys: {', '.join(known)}"


def _preprocess(table: Any) -> Preprocess:
    if not isinstance(table, dict):
        raise ConfigError("preprocess: expected a table [preprocess]")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _PREPROCESS_SCHEMA:
            raise ConfigError(f"preprocess.{key}: {_unknown(key, list(_PREPROCESS_SCHEMA))}")
        _check_type(f"preprocess.{key}", value, _PREPROCESS_SCHEMA[key])
        if key in ("mean", "std"):
            if len(value) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise ConfigError(f"preprocess.{key}: expected an array of 3 numbers, got {value!r}")
            value = tuple(float(v) for v in value)
        values[key] = value
    try:
        return Preprocess(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def job_from_dict(data: dict[str, Any], base: Path, source: Path | None = None) -> Job:
    """Validate a parsed job table; `base` resolves relative paths."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "preprocess":
            values["preprocess"] = _preprocess(value)
            continue
        if key in REMOVED:
            raise ConfigError(REMOVED[key])
        if key not in _SCHEMA:
            raise ConfigError(f"{key}: {_unknown(key, [*_SCHEMA, 'preprocess'])}")
        types, kind = _SCHEMA[key]
        _check_type(key, value, types)
        values[key] = _convert(key, value, kind, base)
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        raise ConfigError(f"missing required key(s): {', '.join(missing)}")
    job = Job(**values, source=source)
    job.validate()
    return job


def load_job(path: Path) -> Job:
    """Read and validate a TOML job file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read job file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return job_from_dict(data, path.resolve().parent, source=path.resolve())
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
