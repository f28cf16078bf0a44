"""GPU binding: which GPU each MPI rank drives, decided without importing a GPU framework.

A rank's GPU is its node-local rank modulo the GPUs this process can see. What it can see is
CUDA_VISIBLE_DEVICES when set (Slurm's per-task binding sets it to one GPU per task, which is
then device 0 of every task), else every GPU that `nvidia-smi -L` lists. Before any CUDA library
starts (`cuda_defaults`, called by the CLI before anything else and by `bind_gpu`), CUDA_DEVICE_ORDER
defaults to PCI_BUS_ID so CUDA's numbering matches nvidia-smi's, and CUDA_DEVICE_MAX_CONNECTIONS to
CUDA_CONNECTIONS (the GPU decoder's streams beside the engine's).

Two ranks of one node that land on the same physical GPU (more ranks than GPUs) is an error
unless the job sets `share_gpus = true`: by mistake (a launcher that ignores the GPUs) it halves each
rank's memory and, where the engine bounds the run, its throughput; on purpose it adds a GPU decoder
where one rank's decoder thread is the bound (docs/guide/gpus.md, "Two ranks a GPU"; docs/dev/decisions/0009).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ConfigError

if TYPE_CHECKING:  # imported in bind_gpu: importing this module (the torch package build does, in a
    from mpi4py import MPI  # child of an MPI rank) must not start MPI


#: hardware work queues of a rank's CUDA context (CUDA's default is 8; a value the environment sets is kept).
#: Streams are spread over the queues, and two streams on one queue wait for each other's work: the GPU decoder's
#: per-image copies and kernels then queue behind the engine's batch, and the decode libraries wait on each image
#: (measurements: docs/dev/decisions/0002)
CUDA_CONNECTIONS = "32"


class GpuError(ConfigError):
    """The ranks cannot be bound to GPUs as launched; the message says how to launch instead."""


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as nvidia-smi reports it (index in nvidia-smi's PCI order)."""

    index: int
    uuid: str
    name: str
    driver: str


@dataclass(frozen=True)
class GpuBinding:
    """The GPU a rank drives: `index` is the CUDA device index inside this process."""

    index: int
    visible: int
    physical: str  # UUID when nvidia-smi knows it, else the CUDA_VISIBLE_DEVICES entry
    name: str
    driver: str
    shared: bool

    @property
    def label(self) -> str:
        return f"cuda:{self.index} {self.name}".strip()


@cache
def nvidia_smi() -> tuple[GpuInfo, ...]:
    """Every GPU of the node per nvidia-smi (it ignores CUDA_VISIBLE_DEVICES); () without a driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "--query-gpu=index,uuid,name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    gpus = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            gpus.append(GpuInfo(int(parts[0]), parts[1], parts[2], parts[3]))
    return tuple(gpus)


def driver_version(proc: Path = Path("/proc/driver/nvidia/version")) -> str:
    """The NVIDIA driver's version for cache keys: the kernel module's own file, read without starting a
    process, else nvidia-smi's answer; "" without a driver."""
    try:
        found = re.search(r"Kernel Module\b.*?\s(\d+\.\d+(?:\.\d+)?)\s", proc.read_text())
    except OSError:
        found = None
    return found[1] if found else ",".join(sorted({g.driver for g in nvidia_smi()}))


def installed_gpus() -> list[str]:
    """The node's GPUs by index: nvidia-smi, else the driver's /proc entries; [] without a driver."""
    smi = nvidia_smi()
    if smi:
        return [str(g.index) for g in smi]
    proc = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(proc.iterdir())))] if proc.is_dir() else []


def visible_devices(env: Mapping[str, str] = os.environ, installed: Sequence[str] | None = None) -> list[str]:
    """IDs of the GPUs CUDA will show this process, in CUDA's order (indices or UUIDs as given).

    `installed` is the node's GPU list (default: `installed_gpus()`); none installed means none
    visible whatever the environment says. CUDA reads CUDA_VISIBLE_DEVICES up to the first
    invalid entry, so "-1" or "" hides every GPU.
    """
    installed = installed_gpus() if installed is None else list(installed)
    value = env.get("CUDA_VISIBLE_DEVICES")
    if not installed or value is None:
        return installed
    ids = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry or entry.startswith("-"):
            break
        ids.append(entry)
    return ids


def _describe(entry: str) -> GpuInfo | None:
    """nvidia-smi's record of a CUDA_VISIBLE_DEVICES entry (an index, a UUID or a UUID prefix)."""
    for gpu in nvidia_smi():
        if entry == str(gpu.index) or (entry.startswith("GPU-") and gpu.uuid.startswith(entry)):
            return gpu
    return None


def cuda_defaults() -> None:
    """CUDA_DEVICE_ORDER and CUDA_DEVICE_MAX_CONNECTIONS, where the environment leaves them unset. Why so early:
    CUDA reads them when it starts in the process, and with backend = "auto" rank 0 asks PyTorch whether it sees
    a GPU while planning, before any rank binds one."""
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", CUDA_CONNECTIONS)


def bind_gpu(comm: MPI.Comm, share: bool = False, env: Mapping[str, str] = os.environ,
             installed: Sequence[str] | None = None) -> GpuBinding | None:
    """Bind this rank to a GPU (collective over `comm`); None when no GPU is visible.

    Raises GpuError on every rank when any node has two ranks on one GPU and `share` is false.
    """
    from mpi4py import MPI

    cuda_defaults()
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    try:
        devices = visible_devices(env, installed)
        binding = None
        if devices:
            index = local.rank % len(devices)
            info = _describe(devices[index])
            physical = info.uuid if info else devices[index]
            binding = GpuBinding(index, len(devices), physical, info.name if info else "",
                                 info.driver if info else "", shared=False)
        owners = local.allgather(binding.physical if binding else None)
    finally:
        local.Free()
    host = socket.gethostname()
    error = ""
    if binding is not None:
        sharing = [r for r, p in enumerate(owners) if p == binding.physical]
        if len(sharing) > 1:
            if share:
                binding = GpuBinding(binding.index, binding.visible, binding.physical, binding.name,
                                     binding.driver, shared=True)
            else:
                error = (f"{len(owners)} ranks on node {host} but {len(set(owners))} distinct GPU(s) "
                         f"visible to them (local ranks {sharing} would share {binding.physical}); "
                         "start one rank per GPU (e.g. mpiexec -n <GPUs per node> per node, or "
                         "srun --gpus-per-task=1), or set share_gpus = true in the job to share them")
    errors = [e for e in comm.allgather(error) if e]
    if errors:
        raise GpuError(errors[0])
    return binding


def visible_gpu_count(env: Mapping[str, str] = os.environ) -> int:
    """How many GPUs this process may use, without importing torch (0 when none or no driver)."""
    return len(visible_devices(env))
