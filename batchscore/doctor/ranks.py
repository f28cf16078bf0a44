"""What each rank sees (host, cores, GPU, launcher), and the checks of MPI, the launcher, cores and GPUs."""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass

import mpi4py
from mpi4py import MPI

from ..comm import cores_for_rank, placement
from ..gpu import bind_gpu, nvidia_smi
from .check import FAIL, OK, WARN, Check

ROOT_VARS = ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM",
             "PRTE_ALLOW_RUN_AS_ROOT", "PRTE_ALLOW_RUN_AS_ROOT_CONFIRM")
ROOT_FIX = "export " + " ".join(f"{v}=1" for v in ROOT_VARS) + "   (or: mpiexec --allow-run-as-root ...)"


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
    device: str  # "cuda:N" inside this process, or "cpu"
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
    binding = bind_gpu(comm, share=True)  # sharing is reported below, not raised
    if binding is None:
        return "cpu", "-", "-"
    index = next((str(g.index) for g in nvidia_smi() if g.uuid == binding.physical), "?")
    return f"cuda:{binding.index}", index, binding.physical


def rank_view(comm: MPI.Comm) -> RankView:
    where = placement(comm)
    name, declared = launcher(os.environ)
    return RankView(where.rank, where.host, where.local_rank, where.local_size, os.cpu_count() or 1,
                    frozenset(os.sched_getaffinity(0)), cores_for_rank(where.local_size), *gpu_binding(comm),
                    name, declared)


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
    return Check("gpus", OK, "no NVIDIA GPU visible: ranks score on CPU cores")


def rank_table(views: list[RankView]) -> str:
    rows = [("rank", "host", "local", "cores", "device", "gpu", "uuid")]
    rows += [(str(v.rank), v.host, str(v.local_rank), str(v.cores), v.device, v.gpu, v.uuid) for v in views]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
