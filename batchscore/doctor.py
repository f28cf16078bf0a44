"""`batchscore doctor`: find the environment problems that otherwise fail a run an hour into the queue.

Every rank reports what it sees (host, node-local rank, cores, the GPU it will use); rank 0 adds
the checks that need doing once (MPI, launcher, backends, decoders, the job) and prints one
OK/WARN/FAIL line per check, each problem followed by the command or setting that fixes it.
Optional modules (GPU binding, engine cache) are used when importable and skipped otherwise.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import subprocess
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import mpi4py
from mpi4py import MPI

from .comm import cores_for_rank, placement

OK, WARN, FAIL = "OK", "WARN", "FAIL"
#: Filesystems on which HDF5's file locking fails or hangs.
NETWORK_FS = frozenset({"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3"})
ROOT_VARS = ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM",
             "PRTE_ALLOW_RUN_AS_ROOT", "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM")
HDF5_FIX = "export HDF5_USE_FILE_LOCKING=FALSE   (in the job script before srun; with mpiexec also -x HDF5_USE_FILE_LOCKING)"
ROOT_FIX = "export " + " ".join(f"{v}=1" for v in ROOT_VARS) + "   (or: mpiexec --allow-run-as-root ...)"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class RankView:
    """What one rank sees; gathered to rank 0 for the table and the per-node checks."""

    rank: int
    host: str
    local_rank: int
    local_size: int
    cpus: int
    affinity: frozenset[int]
    cores: int
    device: str  # "cuda:N" inside this process, "cpu", or "?" without the GPU binding module
    gpu: str  # nvidia-smi index of that GPU, "-" on CPU
    uuid: str
    launcher: str
    declared: int | None


def launcher(env: os._Environ | dict[str, str]) -> tuple[str, int | None]:
    """Which launcher started this process, and how many ranks it says it started."""
    if "PRTE_LAUNCHED" in env or "OMPI_COMM_WORLD_SIZE" in env:
        return "mpiexec (Open MPI)", int(env["OMPI_COMM_WORLD_SIZE"]) if "OMPI_COMM_WORLD_SIZE" in env else None
    if "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:
        tasks = env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1"))
        return f"srun --mpi={env.get('SLURM_MPI_TYPE', 'none')}", int(tasks)
    if "PMI_SIZE" in env:
        return "mpiexec (PMI: MPICH/Intel MPI)", int(env["PMI_SIZE"])
    if "PMIX_RANK" in env:
        return "PMIx launcher", None
    return "none (one process)", 1


def gpu_binding(comm: MPI.Comm) -> tuple[str, str, str]:
    """(device, nvidia-smi index, UUID) this rank will drive, from batchscore.gpu (collective)."""
    gpu, _ = _import("batchscore.gpu")
    if gpu is None:
        return "?", "?", "?"
    binding = gpu.bind_gpu(comm, share=True)  # sharing is reported below, not raised
    if binding is None:
        return "cpu", "-", "-"
    index = next((str(g.index) for g in gpu.nvidia_smi() if g.uuid == binding.physical), "?")
    return f"cuda:{binding.index}", index, binding.physical


def rank_view(comm: MPI.Comm) -> RankView:
    where = placement(comm)
    name, declared = launcher(os.environ)
    return RankView(where.rank, where.host, where.local_rank, where.local_size, os.cpu_count() or 1,
                    frozenset(os.sched_getaffinity(0)), cores_for_rank(where.local_size), *gpu_binding(comm),
                    name, declared)


# --- MPI and launcher -----------------------------------------------------------------------------

def mpi_checks(views: list[RankView], size: int) -> list[Check]:
    library = MPI.Get_library_version().strip().splitlines()[0].split(",")[0]
    major, minor = MPI.Get_version()
    checks = [Check("mpi", OK, f"{library} (MPI {major}.{minor}), mpi4py {mpi4py.__version__}")]
    me = views[0]
    launched = f"{me.launcher}, {size} rank(s)"
    slurm = "SLURM_JOB_ID" in os.environ
    if me.declared is not None and me.declared != size:
        fix = ("srun --mpi=pmix ...   (or set MpiDefault=pmix in slurm.conf / export SLURM_MPI_TYPE=pmix)"
               if me.launcher.startswith("srun") else
               "launch with the mpiexec of the MPI that mpi4py uses: python -c 'import mpi4py; print(mpi4py.get_config())'")
        checks.append(Check("launcher", FAIL, f"{me.launcher} started {me.declared} ranks but MPI sees a world "
                            f"of {size}: each process runs alone and would score everything", fix))
    else:
        checks.append(Check("launcher", OK, launched))
    if slurm:
        checks.append(slurm_check(library))
    if os.geteuid() == 0 and "Open MPI" in library:
        missing = [v for v in ROOT_VARS if not os.environ.get(v)]
        if me.launcher.startswith("mpiexec"):
            checks.append(Check("root", OK, "running as root; mpiexec was allowed to start the ranks"))
        elif me.launcher.startswith("srun"):
            checks.append(Check("root", OK, "running as root under srun (it needs no Open MPI root settings)"))
        elif missing:
            checks.append(Check("root", WARN, f"running as root: Open MPI's mpiexec refuses to start "
                                f"without {', '.join(missing)}", ROOT_FIX))
        else:
            checks.append(Check("root", OK, "running as root; mpiexec's root settings are exported"))
    return checks


def slurm_check(library: str) -> Check:
    """Which PMI plugins this Slurm offers; Open MPI 5 needs PMIx."""
    try:
        res = subprocess.run(["srun", "--mpi=list"], capture_output=True, text=True, timeout=15)
        text = res.stdout + res.stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("slurm", WARN, f"in a Slurm job but `srun --mpi=list` failed: {exc}",
                     "run doctor on a node with Slurm's client tools, or launch with mpiexec inside the allocation")
    plugins = [w for w in (line.replace("srun:", "").strip() for line in text.splitlines())
               if re.fullmatch(r"[a-z0-9_]+", w)]
    if "pmix" in plugins or "Open MPI" not in library:
        return Check("slurm", OK, f"srun --mpi plugins: {', '.join(plugins)}; launch with "
                     f"srun --mpi={'pmix' if 'pmix' in plugins else (plugins or ['?'])[0]}")
    return Check("slurm", WARN, f"srun offers only {', '.join(plugins) or 'no'} MPI plugin(s), Open MPI 5 needs pmix",
                 "inside the allocation launch with mpiexec -n $SLURM_NTASKS ..., or ask the admins for Slurm built --with-pmix")


def cores_check(views: list[RankView]) -> Check:
    """Oversubscribed or overlapping cores, per host."""
    hosts: dict[str, list[RankView]] = defaultdict(list)
    for v in views:
        hosts[v.host].append(v)
    over = [f"{h}: {len(vs)} ranks on {vs[0].cpus} cores" for h, vs in hosts.items() if len(vs) > vs[0].cpus]
    shared = [h for h, vs in hosts.items()
              if all(len(v.affinity) < v.cpus for v in vs)
              and len(frozenset().union(*(v.affinity for v in vs))) < sum(len(v.affinity) for v in vs)]
    if over:
        return Check("cores", WARN, "oversubscribed: " + "; ".join(over),
                     "run at most one rank per core: mpiexec -n <cores> / srun --ntasks-per-node=<cores>")
    if shared:
        return Check("cores", WARN, f"ranks bound to overlapping cores on {', '.join(shared)}",
                     "mpiexec --bind-to core --map-by slot:PE=<cores per rank> / srun --cpu-bind=cores -c <cores>")
    return Check("cores", OK, "; ".join(f"{h}: {len(vs)} rank(s), {vs[0].cpus} cores, {vs[0].cores} per rank"
                                        for h, vs in hosts.items()))


def gpus_check(views: list[RankView], backend: str, on_gpu_backend: bool, share: bool) -> Check:
    """Two ranks on one physical GPU: a FAIL when the run would drive GPUs (it stops), unless the job shares."""
    on_gpu = [v for v in views if v.device.startswith("cuda")]
    users = Counter((v.host, v.uuid) for v in on_gpu)
    dupes = [d for d, n in users.items() if n > 1]
    if dupes:
        shared = "; ".join(f"ranks {','.join(str(v.rank) for v in on_gpu if (v.host, v.uuid) == d)} on {d[0]} "
                           f"share {d[1]}" for d in dupes)
        if share:
            return Check("gpus", OK, f"{shared} (share_gpus = true in the job)")
        consequence = ("the run stops at start" if on_gpu_backend
                       else f"matters only for GPU backends; {backend} runs on the CPU")
        return Check("gpus", FAIL if on_gpu_backend else WARN, f"{shared}: {consequence}",
                     "one rank per GPU: srun --gpus-per-task=1 (or --gpu-bind=single:1), or mpiexec -n <GPUs per "
                     "node> with CUDA_VISIBLE_DEVICES unset; or set share_gpus = true in the job")
    if on_gpu:
        return Check("gpus", OK, f"{len(on_gpu)} rank(s), each on its own GPU")
    if any(v.device == "?" for v in views):
        return Check("gpus", OK, "GPU binding (batchscore.gpu) not in this version: ranks score on CPU")
    return Check("gpus", OK, "no NVIDIA GPU visible: ranks score on CPU cores")


def rank_table(views: list[RankView]) -> str:
    rows = [("rank", "host", "local", "cores", "device", "gpu", "uuid")]
    rows += [(str(v.rank), v.host, str(v.local_rank), str(v.cores), v.device, v.gpu, v.uuid) for v in views]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# --- backends and decoders ------------------------------------------------------------------------

def _import(name: str) -> tuple[object | None, str]:
    """The module, or None and why: not installed, or installed but broken (missing CUDA libraries...)."""
    try:
        return importlib.import_module(name), ""
    except ModuleNotFoundError as exc:
        return None, "not installed" if exc.name == name.split(".")[0] else f"broken: {exc}"
    except Exception as exc:  # a broken install raises OSError/RuntimeError from its native part
        return None, f"broken: {type(exc).__name__}: {exc}"


def _describe(name: str, module: object) -> str:
    if name == "torch":
        cuda = module.cuda.is_available()
        return (f"{module.__version__}, CUDA {module.version.cuda or 'none'}, "
                f"{module.cuda.device_count() if cuda else 0} GPU(s) usable")
    if name == "onnxruntime":
        return f"{module.__version__}, providers: {', '.join(module.get_available_providers())}"
    return getattr(module, "__version__", getattr(module, "VERSION_TEXT", "?"))


def backend_checks(have_gpu: bool, requested: str | None) -> list[Check]:
    """Each backend package's state, and whether what `auto` (and the job) resolves to can run here."""
    from . import engines

    checks = []
    for name in ("tensorrt", "pycuda", "torch", "onnxruntime"):
        module, why = _import(name)
        if module is not None:
            detail = _describe(name, module)
            if name == "torch" and have_gpu and not module.cuda.is_available():
                checks.append(Check(name, WARN, f"{detail} on a node with GPUs",
                                    "install a CUDA build, e.g. pip install torch --index-url "
                                    "https://download.pytorch.org/whl/cu128 (the cuXYZ the driver supports: nvidia-smi)"))
            else:
                checks.append(Check(name, OK, detail))
        elif why.startswith("broken"):
            checks.append(Check(name, WARN, why, f"reinstall it: pip install --force-reinstall {name}"))
        else:
            checks.append(Check(name, OK, "not installed (optional)" if name != "onnxruntime" else why))
    for req in dict.fromkeys(("auto", requested or "auto")):
        backend, reason = engines.choose_backend(req)
        missing = [f"{package} ({why})" for package in engines.BACKEND_PACKAGES.get(backend, (backend,))
                   for why in [_import(package)[1]] if why]
        if backend in engines.GPU_BACKENDS and not have_gpu:
            missing.append("a GPU (none visible to the ranks)")
        if missing:
            checks.append(Check("backend", FAIL, f"{req} → {backend}, which needs {', '.join(missing)}",
                                'install what is missing, or set backend = "onnxruntime" in the job'))
        else:
            checks.append(Check("backend", OK, f"{req} → {backend} ({reason})"))
    return checks


def tiny_jpeg(size: int = 16) -> bytes:
    """A size×size solid (200, 40, 60) JPEG made in memory, so decoders are tried without any file."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (200, 40, 60)).save(buf, "JPEG")
    return buf.getvalue()


def decode_in_a_process(data: bytes, spec: object) -> tuple[int, ...]:
    """Decode `data` in a decode process (decodeprocs.py), as a rank from 4 cores does: its row's shape."""
    import numpy as np

    from .decodeprocs import DecodeProcesses
    from .sources import Item

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "probe.jpg"
        path.write_bytes(data)
        procs = DecodeProcesses(1, spec.shape, warn=lambda why: None)
        try:
            out = np.full((1, *spec.shape), np.nan, np.float32)
            (error, _, _), = procs.decode(out, [Item(path.name, "file", str(path))], spec)
        finally:
            procs.close()
    if procs.broken or error or not np.isfinite(out).all():
        raise RuntimeError(procs.broken or error or "the process left its row unwritten")
    return out.shape[1:]


def decoder_checks(have_gpu: bool, spec: object) -> list[Check]:
    """Decode the tiny JPEG with each decoder present; GPU decoders only when a GPU is there."""
    from .preprocess import preprocess

    data = tiny_jpeg()
    tries = {"Pillow": (lambda: preprocess(data, spec).shape, "pip install --force-reinstall pillow"),
             "Pillow in a decode process (worker_kind, from 4 cores a rank)": (
                 lambda: decode_in_a_process(data, spec), "ranks decode in threads instead (slower on many cores); "
                 "check that this Python runs `python -m batchscore.decodeprocs` on the compute nodes, or set "
                 "worker_kind = \"thread\"")}
    if have_gpu:
        torch, _ = _import("torch")
        tv_io, _ = _import("torchvision.io")
        if tv_io is not None:
            tries["nvJPEG (torchvision)"] = (
                lambda: tuple(tv_io.decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), device="cuda").shape),
                f"pip install the torchvision built for torch {torch.__version__} (same CUDA build)")
        nvimg, _ = _import("nvidia.nvimgcodec")
        if nvimg is not None:
            cuda = (getattr(torch.version, "cuda", None) if torch else None) or "<CUDA major>"
            fix = f"pip install 'nvidia-nvimgcodec-cu{cuda.split('.')[0]}[all]'   (its nvJPEG libraries for this CUDA)"
            # CUDA = nvJPEG's CUDA decoder (Huffman on the CPU, the rest on the GPU); GPU_ONLY is a batched variant.
            for label, kind in (("hardware", "HW_GPU_ONLY"), ("CUDA", "HYBRID_CPU_GPU"), ("CPU", "CPU_ONLY")):
                tries[f"nvImageCodec {label}"] = (lambda kind=kind: nvimg.Decoder(
                    backends=[nvimg.Backend(getattr(nvimg.BackendKind, kind))]).decode(data).shape, fix)
            from .hwjpeg import OFF, decode_one

            tries["nvImageCodec hardware, a batch a call (C API)"] = (
                lambda: decode_one(data, torch), f"set CC to a C compiler, which builds it once per cache; without "
                f"it (or with {OFF}=0) ranks use the Python API, which holds up the other threads more")
    checks = []
    for label, (attempt, fix) in tries.items():
        try:
            checks.append(Check("decoder", OK, f"{label}: decoded a JPEG to {tuple(attempt())}"))
        except Exception as exc:  # each library fails in its own way; the message is the diagnosis
            checks.append(Check("decoder", FAIL if label == "Pillow" else WARN,
                                f"{label} cannot decode a JPEG here: {type(exc).__name__}: {exc}", fix))
    return checks


# --- the job ---------------------------------------------------------------------------------------

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
    from .config import ConfigError

    why = unwritable(out)
    if why:
        return [Check("output", FAIL, f"cannot write {out}: {why}",
                      f"set output in the job file (or pass --output) to a folder you can write, not {out}")]
    done = [name for name in ("scores.h5", "summary.json") if (out / name).exists()]
    checks = [Check("output", WARN, f"{out} already holds a result ({', '.join(done)}): score will refuse it",
                    "pass --overwrite to replace it, or choose another output") if done and not overwrite
              else Check("output", OK, f"{out} is writable")]
    h5lock, _ = _import("batchscore.h5lock")
    if h5lock is not None:
        existing = nearest_existing(out)
        try:
            h5lock.check_locking(existing)
        except ConfigError as exc:
            return checks + [Check("filesystem", FAIL, str(exc), HDF5_FIX)]
        checks.append(hdf5_locking(h5lock.filesystem_type(existing)))
    return checks


def _software_now() -> dict[str, str]:
    """The values of the cache-key fields that describe this node's software (those we can know)."""
    now = {}
    for name in ("tensorrt", "torch"):
        module, _ = _import(name)
        if module is not None:
            now[name] = module.__version__
    gpu, _ = _import("batchscore.gpu")
    driver = gpu.driver_version() if gpu else ""  # as the cache keys read it
    if driver:
        now["driver"] = driver
    return now


def _hardware_now() -> dict[str, set[str]]:
    """The cache-key fields that describe this node's hardware, with the values found here (GPU names only
    where nvidia-smi answers)."""
    from .engines.toolchain import cpu_features

    now = {"cpu_flags": {cpu_features()}}
    gpu, _ = _import("batchscore.gpu")
    names = {g.name for g in gpu.nvidia_smi()} if gpu else set()
    if names:
        now["gpu"] = names
    return now


def cache_checks(cache_dir: Path | None) -> list[Check]:
    """Engine/compile cache: writable, and its entries usable here, built for other hardware (a cache shared
    by unlike nodes; kept), or stale (built by other software)."""
    from . import engines, hwjpeg

    cache_mod, _ = _import("batchscore.enginecache")
    if cache_mod is None:
        return []
    cache = cache_mod.EngineCache(cache_dir or cache_mod.default_cache_dir())
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
        if key is not None and key.get("kind") not in engines.ENGINE_KINDS | {hwjpeg.KIND}:
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
    from .config import ConfigError, load_job
    from .engines import EngineError, EngineOptions, create_engine
    from .model import ModelError, inspect_model
    from .preprocess import preprocess
    from .sources import SourceError, list_items

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
    from .engines.toolchain import cxx_compiler

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


# --- report ----------------------------------------------------------------------------------------

def format_report(checks: list[Check], table: str, size: int) -> str:
    lines = [f"batchscore doctor: {size} rank(s)"]
    for c in checks:
        lines.append(f"{c.status:<5} {c.name:<12} {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"{'':<18} fix: {c.fix}")
    lines += ["rank → host → local rank → GPU:", table]
    counts = Counter(c.status for c in checks)
    lines.append(f"{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL")
    return "\n".join(lines)


def doctor(comm: MPI.Comm, job_file: Path | None = None) -> int:
    """Run every check, print the report on rank 0; 0 when nothing FAILs, else 1 (on every rank)."""
    views = comm.gather(rank_view(comm), root=0)
    status = None
    if comm.rank == 0:
        from . import engines

        have_gpu = any(v.device.startswith("cuda") for v in views)
        job_lines, job = job_checks(job_file) if job_file else ([], None)
        backend, _ = engines.choose_backend(job.backend if job else "auto")
        checks = mpi_checks(views, comm.size) + [cores_check(views), gpus_check(
            views, backend, backend in engines.GPU_BACKENDS, getattr(job, "share_gpus", False))]
        checks += backend_checks(have_gpu, job.backend if job else None)
        from .preprocess import Preprocess

        checks += decoder_checks(have_gpu, job.preprocess if job else Preprocess())
        checks += job_lines + cache_checks(getattr(job, "cache_dir", None))
        print(format_report(checks, rank_table(views), comm.size), flush=True)
        status = 1 if any(c.status == FAIL for c in checks) else 0
    return comm.bcast(status, root=0)
