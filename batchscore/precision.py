"""Precision lives in the ONNX file: FP16 by conversion, INT8 as Q/DQ calibrated on the archive.

TensorRT 11 builds strongly typed networks (no FP16/INT8 builder flags, no calibrators), so a
reduced-precision model is a different ONNX file: FP16 from the model's own types, INT8 from
explicit QuantizeLinear/DequantizeLinear nodes. The same variant then runs on every backend.

INT8 is symmetric (zero point 0) for activations and weights, weights per channel in 7 bits
(-64..64), biases left in float (TensorRT rejects int32 DequantizeLinear inputs). The 7-bit weights
keep ONNX Runtime exact on x86 CPUs without VNNI, whose int8 convolutions add pairs of uint8 x int8
products in 16 bits with saturation: full-range weights overflow that sum. Calibration images are
a seeded sample of the archive put through exactly the scoring preprocessing; the measured ranges
are saved as JSON (keyed by source model, calibration sample hash and method), so re-quantising is
instant.
A job with `precision = "fp16"|"int8"` gets its variant from `prepare_model`, built once into a
cache folder under a file lock (ranks and concurrent jobs never build it twice).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx

from .comm import log
from .config import PRECISIONS, ConfigError, Job
from .model import ModelError, inspect_model, model_sha256
from .decode.cpu import CpuDecoder, decode_executor
from .pipeline import batches
from .preprocess import Preprocess
from .sources import Item, Reader, SourceError, list_items
from .writer import atomic_path, publish

SEED = 0
#: images per calibration pass: the calibrator keeps every intermediate tensor of a pass in memory.
CALIB_CHUNK = 32
VARIANTS_DIR = ".variants"
#: how INT8 variants are quantised (7-bit weights), part of a cached variant's name: after a change of
#: scheme a job builds a new variant instead of reusing one made the old way.
INT8_SCHEME = "w7"


@dataclass(frozen=True)
class Samples:
    """A job's calibration images, the images calibration never saw, and the gate's seeded share of those."""

    calibration: list[Item]
    unseen: list[Item]
    gate: list[Item]


def _pick(items: list[Item], indices: np.ndarray) -> list[Item]:
    return [items[i] for i in sorted(indices.tolist())]


def seeded_sample(items: list[Item], count: int, seed: int = SEED) -> list[Item]:
    """`count` items drawn without replacement by a fixed seed, in key order: the same every run."""
    return _pick(items, np.random.default_rng(seed).permutation(len(items))[:count])


def job_samples(job: Job, items: list[Item]) -> Samples:
    """Calibration from `calib_input` when set, else from the job's input (at most half of it, so there
    are always images calibration never saw); the gate checks a seeded sample of those."""
    order = np.random.default_rng(SEED).permutation(len(items))
    if job.calib_input:
        try:
            calibration = seeded_sample(list_items(job.calib_input, job.hdf5_dataset), job.calib_images)
        except SourceError as exc:
            raise ConfigError(f"calib_input: {exc}") from None
    else:
        n = min(job.calib_images, len(items) // 2)
        calibration, order = _pick(items, order[:n]), order[n:]
    if not calibration or not len(order):
        raise ConfigError(f"the input has {len(items)} image(s): too few to calibrate on some and check the "
                          "result on others; add images or give calib_input")
    return Samples(calibration, _pick(items, order), _pick(items, order[:job.gate_images]))


def sample_sha256(items: list[Item], spec: Preprocess, draft: bool = False) -> str:
    """Identity of a calibration sample: the bytes of its images, in order, and the preprocessing."""
    digest = hashlib.sha256(json.dumps({**asdict(spec), "decode_draft": draft}, sort_keys=True).encode())
    reader = Reader()
    try:
        for item in items:
            try:
                data = reader.read(item)
            except (OSError, ValueError) as exc:
                data = f"unreadable: {exc}".encode()
            digest.update(hashlib.sha256(data).digest())
    finally:
        reader.close()
    return digest.hexdigest()


@dataclass(frozen=True)
class Calibration:
    """What an INT8 variant is calibrated on and how; `sha256` names the sample."""

    items: list[Item]
    spec: Preprocess
    method: str = "entropy"
    draft: bool = False  # the job's decode_draft: calibration sees exactly what scoring will
    workers: int = 0

    @cached_property
    def sha256(self) -> str:
        return sample_sha256(self.items, self.spec, self.draft)


def _publish_model(model: onnx.ModelProto, output: Path, metadata: dict[str, str]) -> None:
    """Add our metadata to the model's own and write it atomically (temp name in the folder, rename)."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update(metadata)
    onnx.helper.set_model_props(model, props)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_path(output)
    try:
        onnx.save_model(model, str(tmp))
        publish(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


#: kept in FP32 besides the converter's own list (ops without FP16 kernels): exponentials, powers and
#: sums of squares overflow FP16's 65504 long before FP32 does.
FP32_OPS = ("Softmax", "LogSoftmax", "LayerNormalization", "Exp", "Pow", "ReduceSumSquare", "ReduceL2")


def to_fp16(source: Path, output: Path, metadata: dict[str, str]) -> None:
    """FP16 weights and compute with float32 inputs/outputs, by onnxconverter-common's converter."""
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True,
                                     op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP32_OPS])
    _publish_model(model, output, metadata)


def _ort_method(name: str):  # noqa: ANN202 - onnxruntime's CalibrationMethod, imported lazily
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
            "minmax": CalibrationMethod.MinMax}[name]


def ranges_path(output: Path, source_sha: str, calibration_sha: str, method: str) -> Path:
    """Where the calibration ranges of (model, sample, method) are kept: next to the INT8 file."""
    return output.with_name(f"{output.stem}.ranges-{source_sha[:12]}-{calibration_sha[:12]}-{method}.json")


def _calibrate(model: Path, input_name: str, calibration: Calibration, ranges: Path) -> int:
    """Run the calibration images through ORT's calibrator in chunks; saves the ranges, returns the count."""
    from onnxruntime.quantization.calibrate import CalibrationDataReader, create_calibrator, save_tensors_data

    class OneBatch(CalibrationDataReader):
        """One decoded chunk; collect_data per chunk keeps calibration memory flat on large samples."""

        def __init__(self, feed: dict[str, np.ndarray]) -> None:
            self.feeds = iter([feed])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    count = 0
    with tempfile.TemporaryDirectory(prefix="batchscore-calib-") as tmp:
        calibrator = create_calibrator(model, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=_ort_method(calibration.method),
                                       extra_options={"symmetric": True})
        # ORT's histogram calibrators print progress on stdout, which is the scoring table's channel.
        with decode_executor(calibration.workers) as pool, contextlib.redirect_stdout(io.StringIO()):
            decoder = CpuDecoder(calibration.spec, pool, calibration.draft)
            for batch in batches(calibration.items, decoder, CALIB_CHUNK):
                if len(batch.tensors):
                    calibrator.collect_data(OneBatch({input_name: batch.tensors}))
                    count += len(batch.tensors)
            if count == 0:
                raise ConfigError(f"none of the {len(calibration.items)} calibration images could be decoded")
            tensors = calibrator.compute_data()
    save_tensors_data(tensors, ranges)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(ranges, 0o666 & ~umask)  # ORT writes it through mkstemp (owner-only); the cache may be shared
    return count


def to_int8(source: Path, output: Path, calibration: Calibration, metadata: dict[str, str]) -> None:
    """Symmetric INT8 Q/DQ (7-bit per-channel weights) by ORT's quantize_static, from saved or new ranges."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ranges = ranges_path(output, metadata["source_sha256"], metadata["calibration_sha256"], calibration.method)
    with tempfile.TemporaryDirectory(prefix="batchscore-quant-") as tmp:
        # Shape inference and graph optimisation (e.g. BatchNorm folded into Conv) before calibration,
        # so the ranges are measured on the tensors that get quantised.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        if ranges.is_file():
            log(0, f"reusing calibration ranges {ranges}")
        else:
            log(0, f"calibrating ({calibration.method}) on {len(calibration.items)} images")
            count = _calibrate(prepared, inspect_model(source).input_name, calibration, ranges)
            log(0, f"calibrated on {count} images; ranges saved to {ranges}")
        quantized = Path(tmp) / "int8.onnx"
        # reduce_range: weights in -64..64, so ORT's 16-bit pair sums on CPUs without VNNI cannot saturate
        # (uint8 activations: 2 * 255 * 64 < 32767); full-range weights make those CPUs compute wrong scores.
        quantize_static(
            str(prepared), str(quantized), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
            per_channel=True, reduce_range=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=_ort_method(calibration.method),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
            calibration_cache_path=str(ranges),
        )
        _publish_model(onnx.load(str(quantized)), output, metadata)


def _source_sha256(path: Path) -> str:
    try:
        return model_sha256(path)
    except ModelError as exc:
        raise ConfigError(str(exc)) from None


def quantize(source: Path, output: Path, precision: str, calibration: Calibration | None = None,
             source_sha: str | None = None) -> dict[str, str]:
    """Write the `precision` variant of `source` to `output`; returns the metadata recorded in it."""
    metadata = {"precision": precision, "source_sha256": source_sha or _source_sha256(source)}
    if precision == "fp16":
        to_fp16(source, output, metadata)
    elif precision == "int8":
        if calibration is None or not calibration.items:
            raise ConfigError("int8 needs calibration images: give --calib INPUT (or a job whose input has images)")
        metadata.update(calibration_method=calibration.method, calibration_sha256=calibration.sha256,
                        calibration_images=str(len(calibration.items)))
        to_int8(source, output, calibration, metadata)
    else:
        raise ConfigError(f"precision must be fp16 or int8 to make a variant, got {precision!r}")
    return metadata


def variants_dir(job: Job) -> Path:
    """`cache_dir`/variants when set, else a folder in the job's output: the one place every rank shares."""
    return job.cache_dir / "variants" if job.cache_dir else job.output / VARIANTS_DIR


def variant_metadata(path: Path) -> dict[str, str]:
    """What `quantize` recorded in a variant: precision, source SHA-256, calibration method/hash/size."""
    keys = ("precision", "source_sha256", "calibration_method", "calibration_sha256", "calibration_images")
    metadata = inspect_model(path).metadata
    return {k: metadata[k] for k in keys if k in metadata}


def scored_precision(job: Job, metadata: dict[str, str]) -> str:
    """The precision the job really scores at, from its model's metadata (`metadata`).

    A model `quantize` already reduced is scored as it is, at the precision it records; precision =
    "fp32" (no reduction asked for) or the same precision accept it. Asking it for another precision
    is a ConfigError: a reduced model is never reduced again.
    """
    own = metadata.get("precision", "fp32")
    if own not in PRECISIONS[1:] or job.precision in ("fp32", own):
        return own if own in PRECISIONS[1:] else job.precision
    raise ConfigError(f"{job.model} is already an {own} model (its metadata says precision = {own}), but the job "
                      f"asks for precision = {job.precision}: pass --precision {own} (or fp32) to score it as it "
                      f"is, or give the FP32 source model to make the {job.precision} variant from")


def prepare_model(job: Job, items: list[Item] | None = None) -> Path:
    """The model file to score: the source for fp32 or when it already is at the job's precision
    (`scored_precision`), else its cached variant, built on first use."""
    if job.precision == "fp32" or variant_metadata(job.model).get("precision") == job.precision:
        return job.model
    from filelock import FileLock

    sha = _source_sha256(job.model)
    calibration = None
    tag = f"{job.precision}-{sha[:16]}"
    if job.precision == "int8":  # fp16 needs no images; int8 calibrates on a sample of the input
        try:
            items = list_items(job.input, job.hdf5_dataset) if items is None else items
        except SourceError as exc:
            raise ConfigError(str(exc)) from None
        calibration = Calibration(job_samples(job, items).calibration, job.preprocess, job.calib_method,
                                  job.decode_draft, job.workers)
        tag += f"-{INT8_SCHEME}-{job.calib_method}-{calibration.sha256[:16]}"
    folder = variants_dir(job)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cache_dir {folder} cannot be created ({exc.strerror}); set cache_dir to a "
                          "writable folder that every rank can read") from None
    variant = folder / f"{job.model.stem}-{tag}.onnx"
    with FileLock(str(variant) + ".lock"):
        if variant.is_file():
            log(0, f"using cached {job.precision} variant {variant}")
        else:
            log(0, f"building the {job.precision} variant of {job.model} into {variant}")
            quantize(job.model, variant, job.precision, calibration, sha)
    return variant
