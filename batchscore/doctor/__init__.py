"""`batchscore doctor`: find the environment problems that otherwise fail a run an hour into the queue.

Every rank reports what it sees (host, node-local rank, cores, the GPU it will use: ranks.py); rank 0 adds
the checks that need doing once (MPI, launcher, backends and decoders: software.py, the job: job.py) and
prints one OK/WARN/FAIL line per check, each problem followed by the command or setting that fixes it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from mpi4py import MPI

from ..engines import GPU_BACKENDS, choose_backend
from ..preprocess import Preprocess
from .check import FAIL, OK, WARN, Check
from .job import cache_checks, job_checks
from .ranks import cores_check, gpus_check, mpi_checks, rank_table, rank_view
from .software import backend_checks, decoder_checks


def format_report(checks: list[Check], table: str, size: int) -> str:
    """One line per check (and its fix when it is not OK), the rank table, and the counts."""
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
        have_gpu = any(v.device.startswith("cuda") for v in views)
        job_lines, job = job_checks(job_file) if job_file else ([], None)
        backend, _ = choose_backend(job.backend if job else "auto")
        checks = mpi_checks(views, comm.size) + [cores_check(views), gpus_check(
            views, backend, backend in GPU_BACKENDS, getattr(job, "share_gpus", False))]
        checks += backend_checks(have_gpu, job.backend if job else None)
        checks += decoder_checks(have_gpu, job.preprocess if job else Preprocess())
        checks += job_lines + cache_checks(getattr(job, "cache_dir", None))
        print(format_report(checks, rank_table(views), comm.size), flush=True)
        status = 1 if any(c.status == FAIL for c in checks) else 0
    return comm.bcast(status, root=0)
