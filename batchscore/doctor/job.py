"""`doctor --job`: the job's inputs, model and output folder, the engine cache, and the C++ compiler."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..config import ConfigError, load_job
from ..enginecache import EngineCache, default_cache_dir
from ..engines import ENGINE_KINDS, EngineError, EngineOptions, create_engine
from ..engines.toolchain import cpu_features, cxx_compiler
from ..gpu import driver_version, nvidia_smi
from ..h5lock import check_locking, filesystem_type
from ..model import ModelError, inspect_model
from ..preprocess import preprocess
from ..sources import SourceError, list_items
from .check import FAIL, OK, WARN, Check, try_import
from ..decode.probe import tiny_jpeg

#: Filesystems on which HDF5's file locking fails or hangs.
NETWORK_FS = frozenset({"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3"})
HDF5_FIX = "export HDF5_USE_FILE_LOCKING=FALSE   (in the job script before srun; with mpiexec also -x HDF5_USE_FILE_LOCKING)"


def nearest_existing(path: Path) -> Path:
    return next(p for p in (path, *path.parents) if p.exists())


def unwritable(folder: Path) -> str:
    """Why results could not be written to `folder` (created if missing); '' when they can."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"{existing} is not writable ({exc.strerror})"
    return ""


def hdf5_locking(fstype: str, env: os._Environ | dict[str, str] = os.environ) -> Check:
    """After a successful lock probe: on network filesystems locking may still fail or hang, so advise it off."""
    if fstype.split(".")[-1] in NETWORK_FS and env.get("HDF5_USE_FILE_LOCKING", "").upper() != "FALSE":
        return Check("filesystem", WARN, f"{fstype}: HDF5 file locking fails or hangs on it", HDF5_FIX)
    return Check("filesystem", OK, f"{fstype}; HDF5 file locking works there")


def output_checks(out: Path, overwrite: bool) -> list[Check]:
    """Can results be written there, and does HDF5's file locking work on that filesystem."""
    why = unwritable(out)
    if why:
        return [Check("output", FAIL, f"cannot write {out}: {why}",
                      f"set output in the job file (or pass --output) to a folder you can write, not {out}")]
    done = [name for name in ("scores.h5", "summary.json") if (out / name).exists()]
    checks = [Check("output", WARN, f"{out} already holds a result ({', '.join(done)}): score will refuse it",
                    "pass --overwrite to replace it, or choose another output") if done and not overwrite
              else Check("output", OK, f"{out} is writable")]
    existing = nearest_existing(out)
    try:
        check_locking(existing)
    except ConfigError as exc:
        return checks + [Check("filesystem", FAIL, str(exc), HDF5_FIX)]
    return [*checks, hdf5_locking(filesystem_type(existing))]


def _software_now() -> dict[str, str]:
    """The values of the cache-key fields that describe this node's software (those we can know)."""
    now = {}
    for name in ("tensorrt", "torch"):
        module, _ = try_import(name)
        if module is not None:
            now[name] = module.__version__
    driver = driver_version()  # as the cache keys read it
    if driver:
        now["driver"] = driver
    return now


def _hardware_now() -> dict[str, set[str]]:
    """The cache-key fields that describe this node's hardware, with the values found here (GPU names only
    where nvidia-smi answers)."""
    now = {"cpu_flags": {cpu_features()}}
    names = {g.name for g in nvidia_smi()}
    if names:
        now["gpu"] = names
    return now


def cache_checks(cache_dir: Path | None) -> list[Check]:
    """Engine/compile cache: writable, and its entries usable here, built for other hardware (a cache shared
    by unlike nodes; kept), or stale (built by other software)."""
    cache = EngineCache(cache_dir or default_cache_dir())
    why = unwritable(cache.root)
    if why:
        return [Check("cache", WARN, f"engine cache {cache.root}: {why}",
                      "set cache_dir in the job, or export BATCHSCORE_CACHE=<a writable folder>")]
    now, hardware = _software_now(), _hardware_now()
    usable, unchecked, elsewhere, stale = 0, 0, 0, []
    for sidecar in sorted(cache.root.glob("*.json")):
        entry = sidecar.with_name(sidecar.name.removesuffix(".json"))
        try:
            key = json.loads(sidecar.read_text())["key"]
            reasons = [f"{field} {key[field]}, here {value}" for field, value in now.items()
                       if field in key and key[field] != value]
        except (OSError, ValueError, KeyError, TypeError):
            key, reasons = None, ["unreadable sidecar"]
        if key is not None and key.get("kind") not in ENGINE_KINDS:
            reasons.append(f"kind {key.get('kind')}: built by another batchscore version, never read by this one")
        elif key is not None and not entry.exists():
            reasons.append("built file missing")
        elif key is not None and not entry.name.startswith(cache.path(key).name):
            reasons.append("sidecar belongs to another entry")
        if reasons:
            stale.append((entry, sidecar, "; ".join(reasons)))
        elif any(field in key and key[field] not in values for field, values in hardware.items()):
            elsewhere += 1
        elif any(field in key for field in ("tensorrt", "torch") if field not in now):
            unchecked += 1
        else:
            usable += 1
    note = f", {unchecked} for software not installed here (not checked)" if unchecked else ""
    note += f", {elsewhere} for other GPUs or CPUs (kept for the nodes that have them)" if elsewhere else ""
    if not stale:
        return [Check("cache", OK, f"{cache.root}: {usable} entr(ies) usable here{note}" if usable or note
                      else f"{cache.root}: empty (engines are built on first use)")]
    detail = "; ".join(f"{e.name} ({why})" for e, _, why in stale)
    remove = " ".join(str(p) for e, s, _ in stale for p in (e, s))
    return [Check("cache", WARN, f"{cache.root}: {len(stale)} stale entr(ies), {usable} usable{note}: {detail}",
                  f"rm -rf {remove}   (they are rebuilt on the next run)")]


def job_checks(path: Path) -> tuple[list[Check], object]:
    """The job's inputs, model and output; returns the checks and the job (None when it does not load)."""
    try:
        job = load_job(path)
    except ConfigError as exc:
        return [Check("job", FAIL, str(exc), f"fix {path} (see docs/ or jobs/demo.toml)")], None
    checks = [Check("job", OK, str(path))]
    try:
        count = len(list_items(job.input, job.hdf5_dataset))
        checks.append(Check("input", OK if count else FAIL, f"{count} images in {', '.join(map(str, job.input))}",
                            "" if count else "point input at folders/tars/.h5/list files that hold images"))
    except (SourceError, OSError) as exc:
        checks.append(Check("input", FAIL, str(exc), f"set input in {path} to existing, readable paths"))
    try:
        info = inspect_model(job.model)
        with create_engine("onnxruntime", job.model, EngineOptions(batch_size=1, threads=1)) as engine:
            outputs = engine.infer(preprocess(tiny_jpeg(), job.preprocess)[None])
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in outputs.items())
        checks.append(Check("model", OK, f"{job.model.name}: input {info.input_name} {info.input_shape}; "
                            f"ONNX Runtime ran one image → {shapes}"))
    except (ModelError, EngineError) as exc:
        checks.append(Check("model", FAIL, str(exc), f"set model in {path} to a readable .onnx file"))
    checks += output_checks(job.output, job.overwrite)
    if job.compile == "compiled" and job.backend in ("torch", "auto"):
        checks.append(compiler_check())
    return checks, job


def compiler_check() -> Check:
    """compile = "compiled" links a C++ library (AOTInductor) on the rank that builds a node's package."""
    compiler = cxx_compiler()
    if compiler.path and compiler.static_libstdcxx:
        return Check("compiler", WARN, f"{compiler.path}: {compiler.note}", "point CXX at a g++ that links libstdc++ "
                     "as a shared library (the system's), or prebuild with python -m batchscore build where one is")
    if compiler.path:
        return Check("compiler", OK, f"{compiler.path} (compile = 'compiled' builds its package with it"
                     f"{'; ' + compiler.note if compiler.note else ''})")
    return Check("compiler", WARN, f"compile = 'compiled' builds a C++ library where no package is cached yet, and "
                 f"{compiler.name} is not on PATH here", "load a GCC module (module load gcc) or set CXX; or prebuild "
                 "with python -m batchscore build on a node that has one; or use compile = 'cudagraph'")
