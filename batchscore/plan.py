"""Rank 0's plan of a scoring run: every check that can fail before work starts, cheapest first.

`PLAN` is the list of checks in the order they run. Each takes the `Draft` (what is known so far), checks one
thing, and adds what it learnt; the first that fails raises ConfigError with what to fix (exit 2, one line).
The output folder's checks (a look for files, a probe file) come before the model is read, the model before
the input is listed, and the slow steps last: building a reduced-precision variant (INT8: calibration) and
the accuracy gate, which runs both models. Only when every check passed does `plan_run` discard an unfinished
run's parts (--overwrite) and write the resume marker.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .accuracy import gate
from .comm import log
from .config import ConfigError, Job, differences
from .engines import Outputs, choose_backend, resolve
from .decode.gpu import choose_decode
from .h5lock import check_locking, is_lock_error, lock_advice
from .incremental import INDEX, Changes, plan_changes
from .itemtable import ItemTable
from .model import ModelError, ModelInfo, class_names, inspect_model, model_sha256
from .outlock import OutputLock
from .precision import job_samples, prepare_model, scored_precision, variant_metadata
from .sources import IMAGE_EXTENSIONS, Item, SourceError
from .writer import PARTS, done_keys, key_array, remove_leftovers, write_json

RESULT_FILES = ("scores.h5", "summary.json")


@dataclass
class Plan:
    """Decided once by rank 0 and broadcast, so every rank works from the same facts; the items to score are
    not broadcast but split (`todo`, rank 0 only), and only rank 0 keeps every key (`keys`, for the merge)."""

    total: int
    run_id: str
    backend: str
    backend_reason: str
    model_sha256: str
    output_shapes: dict[str, tuple[int, ...]]
    save_outputs: list[str]
    resumed: int
    classes: list[str]
    incremental: Changes | None = None  # --incremental: the run under OUTPUT/runs/ and what it changes
    model: Path | None = None  # the file scored: the job's model, or its fp16/int8 variant
    precision_check: dict | None = None  # the accuracy gate's figures and the variant's metadata
    decode: str = "cpu"  # "cpu" or "gpu": job.decode resolved for this backend (decode/gpu.py)
    decode_reason: str = ""
    skipped: dict[str, int] | None = None  # what the listing passed over, by reason (sources.list_items)
    precision: str = "fp32"  # job.precision, or the precision an already reduced model records (scored_precision)
    batch_size: int = 0  # the job's batch size and compile mode settled for the backend's device (Job.settled)
    compile: str = "eager"
    todo: ItemTable | None = None  # rank 0, until split: the items still to score
    keys: np.ndarray | None = None  # rank 0: every key of the run, sorted (writer.key_array)

    def empty_outputs(self) -> Outputs:
        """Zero-row outputs for a batch in which no image decoded."""
        return Outputs({name: np.empty((0, *shape), np.float32) for name, shape in self.output_shapes.items()})


@dataclass
class Draft:
    """What the checks have learnt so far; `job` is settled step by step (precision, backend, output)."""

    job: Job
    info: ModelInfo | None = None
    sha: str = ""
    classes: list[str] = field(default_factory=list)
    save: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    backend: str = ""
    backend_reason: str = ""
    decode: str = "cpu"
    decode_reason: str = ""
    items: ItemTable | None = None
    skipped: Counter = field(default_factory=Counter)
    model: Path | None = None
    gate_items: list[Item] = field(default_factory=list)
    fingerprint: dict = field(default_factory=dict)
    changes: Changes | None = None
    precision_check: dict | None = None


def writable(out: Path) -> None:
    """Create `out` and write a file there; ConfigError naming the folder when that fails."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} is a file, not a folder: choose a folder for the results "
                          "(--output DIR, or output in the job file)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {out} is not writable ({exc.strerror}); "
                          "choose another --output") from None


def hold_output(job: Job) -> Callable[[], None]:
    """Rank 0, before planning: check that the output folder is writable and lock it (ConfigError when another
    job holds it); returns the release, which also removes the folder again where this job made it and left
    nothing in it (a job refused while planning writes nothing)."""
    made = not job.output.exists()
    writable(job.output)
    lock = OutputLock(job.output).acquire()
    remove_leftovers(job.output)  # this job holds the folder: temporary files in it are a killed job's
    if lock.stale:
        log(0, f"took over the lock of a job that is gone (host {lock.stale.get('host')}, "
               f"PID {lock.stale.get('pid')})")

    def release() -> None:
        lock.release()
        if made:
            with suppress(OSError):  # not empty: the run's results, parts or variants are in it
                job.output.rmdir()
    return release


# --- the checks, in the order PLAN runs them ------------------------------------------------------------------

def incremental_flag_matches_output(d: Draft) -> None:
    """A nightly job that lost its --incremental would rescore the whole archive into the index's folder."""
    if not d.job.incremental and (d.job.output / INDEX).exists():
        raise ConfigError(f"{d.job.output} holds the index of incremental runs ({INDEX}); pass --incremental (or "
                          "set incremental = true) to score what is new or changed since the last run, or choose "
                          "another --output for a full run")


def no_result_in_the_way(d: Draft) -> None:
    """A finished result is replaced only with --overwrite (an unfinished run's parts folder is resumed instead).
    An incremental run scores into a new or unfinished folder of its own under OUTPUT/runs/ (plan_changes)."""
    out = d.job.output
    existing = [name for name in RESULT_FILES if (out / name).exists()]
    if existing and not d.job.incremental and not d.job.overwrite and not (out / PARTS / "job.json").exists():
        raise ConfigError(f"{out} already holds a result ({', '.join(existing)}); "
                          "pass --overwrite to replace it or choose another --output")


def hdf5_locking_works(d: Draft) -> None:
    """Network filesystems without locks: fail now, naming HDF5_USE_FILE_LOCKING, not mid-run."""
    check_locking(d.job.output)


def model_is_readable(d: Draft) -> None:
    """The model loads as ONNX; its hash, classes, and the precision it is scored at (a reduced model's own)."""
    try:
        d.info = inspect_model(d.job.model)
        d.sha = model_sha256(d.job.model, d.info)
        d.classes = class_names(d.job.classes, d.info.metadata)
    except ModelError as exc:
        raise ConfigError(str(exc)) from None
    d.job = d.job.with_overrides(precision=scored_precision(d.job, d.info.metadata))


def model_outputs_fit_the_job(d: Draft) -> None:
    """A fixed class dimension, top_k within it, and outputs to save that exist with fixed dimensions."""
    info, job = d.info, d.job
    if info.num_classes is None:
        raise ConfigError(f"{job.model}: the first output needs a fixed class dimension, got {info.outputs}")
    if job.top_k > info.num_classes:
        raise ConfigError(f"top_k = {job.top_k} but the model has only {info.num_classes} classes")
    d.save = list(info.outputs) if "*" in job.save_outputs else list(job.save_outputs)
    unknown = [n for n in d.save if n not in info.outputs]
    if unknown:
        raise ConfigError(f"save_outputs names {unknown}, but the model's outputs are {list(info.outputs)}")
    d.shapes = {name: tuple(shape[1:]) for name, shape in info.outputs.items()}
    dynamic = [n for n in d.save if not all(isinstance(dim, int) for dim in d.shapes[n])]
    if dynamic:
        raise ConfigError(f"save_outputs: outputs {dynamic} have dynamic dimensions besides the batch")


def backend_can_run_it(d: Draft) -> None:
    """The backend (`auto` resolved), its precision and decode mode, then its packages, and the job settled for its
    device. What the job asks that the backend cannot do is said before what is missing here to run it."""
    backend, _ = choose_backend(d.job.backend)
    if backend == "torch" and d.job.precision == "int8":
        raise ConfigError("the torch backend cannot run INT8 (Q/DQ) models (onnx2torch has no quantized ops); "
                          "use backend = 'tensorrt' or 'onnxruntime' for int8, or precision = 'fp16'")
    d.decode, d.decode_reason = choose_decode(d.job.decode, backend, d.job.gpu_decoder)
    resolved = resolve(d.job)  # ConfigError where the backend's packages are missing
    d.backend, d.backend_reason, d.job = resolved.backend, resolved.reason, resolved.job


def input_has_images(d: Draft) -> None:
    """List the input (folders, tars, HDF5, list files); an incremental run may find nothing new, a full one not."""
    try:
        d.items = ItemTable.from_inputs(d.job.input, d.job.hdf5_dataset, d.skipped)
    except SourceError as exc:
        raise ConfigError(lock_advice(d.job.input[0]) if is_lock_error(exc) else str(exc)) from None
    if not d.items and not d.job.incremental:
        raise ConfigError(f"no images in {', '.join(map(str, d.job.input))}: folders are searched, with their "
                          f"sub-folders and .tar files, for {' '.join(sorted(IMAGE_EXTENSIONS))} files; "
                          "check --input (or input in the job file)")


def variant_is_built(d: Draft) -> None:
    """fp32: the job's model; fp16/int8: its variant, built once and cached (int8 calibrates on the input)."""
    d.model = prepare_model(d.job, d.items)
    d.gate_items = job_samples(d.job, d.items).gate if d.model != d.job.model else []
    d.fingerprint = _fingerprint(d.job, d.sha)
    if d.model != d.job.model:
        d.fingerprint["variant"] = d.model.name  # names source hash, precision, calibration hash and method


def incremental_run_is_chosen(d: Draft) -> None:
    """--incremental: only what is new or changed since the last run, scored into OUTPUT/runs/<run>."""
    if d.job.incremental:
        d.changes, d.items = plan_changes(d.job, d.items, d.fingerprint)
        d.job = d.job.with_overrides(output=d.changes.run_dir)
        writable(d.job.output)
        remove_leftovers(d.job.output)


def unfinished_run_is_this_job(d: Draft) -> None:
    """Committed parts are continued only by the job that wrote them (--overwrite discards them)."""
    marker = d.job.output / PARTS / "job.json"
    if d.job.overwrite or not marker.exists():
        return
    before = json.loads(marker.read_text())
    if before != d.fingerprint:
        raise ConfigError(f"{d.job.output} holds an unfinished run of a different job "
                          f"({differences(before, d.fingerprint)}); rerun with its settings to finish it, pass "
                          "--overwrite to discard it, or choose another --output")


def variant_passes_the_gate(d: Draft) -> None:
    """Reduced precision: compare with fp32 on held-out images before anything is scored."""
    if d.gate_items:
        d.precision_check = {**gate(d.job, d.model, d.gate_items, d.backend, d.classes),
                             "variant": variant_metadata(d.model)}


#: the checks, cheapest first
PLAN: tuple[Callable[[Draft], None], ...] = (
    incremental_flag_matches_output, no_result_in_the_way, hdf5_locking_works, model_is_readable,
    model_outputs_fit_the_job, backend_can_run_it, input_has_images, variant_is_built, incremental_run_is_chosen,
    unfinished_run_is_this_job, variant_passes_the_gate)


def _fingerprint(job: Job, sha: str) -> dict:
    """What must match for a rerun to continue an interrupted run's parts (JSON-normalised, as stored)."""
    return json.loads(json.dumps({"model_sha256": sha, "precision": job.precision, "top_k": job.top_k,
                                  "save_outputs": list(job.save_outputs), "preprocess": asdict(job.preprocess),
                                  "decode_draft": job.decode_draft, "decode": job.decode,
                                  "input": [str(p) for p in job.input]}))


def plan_run(job: Job) -> Plan:
    """Rank 0: run every check of PLAN, then set up the output's parts folder; ConfigError with what to fix."""
    d = Draft(job)
    for check in PLAN:
        check(d)
    out, marker = d.job.output, d.job.output / PARTS / "job.json"
    if (out / PARTS).exists() and (d.job.overwrite or not marker.exists()):
        shutil.rmtree(out / PARTS)  # --overwrite discards an unfinished run; parts without a job are nobody's
    if marker.exists():
        done = done_keys(out)
    else:  # a previous result (--overwrite) stays until the new scores.h5 replaces it
        done = key_array([])
        marker.parent.mkdir(exist_ok=True)
        write_json(marker, d.fingerprint)
    todo = d.items.without(done)
    return Plan(len(d.items), uuid.uuid4().hex[:12], d.backend, d.backend_reason, d.sha, d.shapes, d.save,
                len(d.items) - len(todo), d.classes, d.changes, model=d.model, precision_check=d.precision_check,
                decode=d.decode, decode_reason=d.decode_reason, skipped=dict(d.skipped), precision=d.job.precision,
                batch_size=d.job.batch_size, compile=d.job.compile, todo=todo, keys=d.items.keys)
