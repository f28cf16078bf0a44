"""Every command in README.md, docs/ and benchmarks/README.md runs as written, and writes only under results/ or a temporary folder.

The shell blocks (```sh, ```bash) and Python blocks (```python) of each page are run one shell (or one Python)
per block, in a fresh copy of the repository taken after `make demo`, as the user running the tests (root in
CI), with no Open MPI variables and without the venv on PATH: a page must say how to get them. Lines of earlier
blocks of the same page that set up the shell (`source ...`, `export ...`) are run first, as in a terminal
where the reader ran them. Blocks that need what this machine lacks are listed in NEEDS with the reason and
skipped; each run reports them. Afterwards no tracked file may have changed and no file may have appeared
outside results/.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, fresh_tmpdir, mpi_env

PAGES = sorted([ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
SHELL = {"sh", "bash", "shell", "console"}

#: (pattern found anywhere in a block, why the block cannot run here); the first match wins
NEEDS: list[tuple[str, str]] = [
    (r"^\s*make (demo|test)\b", "make demo ran before these blocks (the copy is taken after it); "
                                "make test is the suite this test belongs to"),
    (r"\b(sbatch|srun|scrontab|scontrol|sinfo)\b|tests/test_slurm\.py", "needs a Slurm cluster"),
    (r"--backend tensorrt", "needs TensorRT, which is not installable here"),
    (r"--backend torch|--decode gpu|benchmarks/gpu/|tests/gpu\b|batchscore build|share_gpus|job\.toml",
     "needs a GPU with torch and torchvision"),
    (r"benchmarks/(peers|startup)\.py", "needs torch and torchvision (peers' scripts; --ray: ray[data])"),
    (r"benchmarks/cpu_pipeline\.py --rounds 9", "a benchmark of minutes; the same script runs with fewer "
                                                "rounds from benchmarks/README.md"),
    (r"benchmarks/scale\.py --sizes 1 3 10", "a benchmark of tens of minutes (10 million keys)"),
]
#: what a fresh clone has after `make demo` besides its tracked files (linked or copied into the copy)
AFTER_DEMO = ("data/sample", "results/demo")


def _blocks() -> list[tuple[str, int, str, str, str]]:
    """(page, block number, language, preamble, text) of every shell and Python block."""
    out = []
    for page in PAGES:
        setup: list[str] = []
        for number, match in enumerate(FENCE.finditer(page.read_text(encoding="utf-8")), 1):
            lang, text = match.group(1).lower(), match.group(2)
            if lang in SHELL:
                out.append((str(page.relative_to(ROOT)), number, "sh", "\n".join(setup), text))
                setup += [line for line in text.splitlines() if re.match(r"\s*(source|export)\s", line)]
            elif lang == "python":
                out.append((str(page.relative_to(ROOT)), number, "python", "", text))
    return out


BLOCKS = _blocks()


def _need(text: str) -> str | None:
    for pattern, reason in NEEDS:
        if re.search(pattern, text, re.M):
            return reason
    return None


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and (ROOT / p).is_file()]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A copy of the repository as a fresh clone after `make demo`: tracked files, the sample, the demo result."""
    demo = subprocess.run(["make", "demo"], cwd=ROOT, capture_output=True, text=True, env=mpi_env(), timeout=900)
    assert demo.returncode == 0, f"make demo failed:\n{demo.stdout[-3000:]}\n{demo.stderr[-3000:]}"
    copy = tmp_path_factory.mktemp("clone") / "batchscore"
    tracked = _tracked()
    for rel in tracked:
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, copy / rel)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    (copy / "data" / "sample").symlink_to(ROOT / "data" / "sample")
    shutil.copytree(ROOT / "results" / "demo", copy / "results" / "demo")
    return copy, {rel: _digest(copy / rel) for rel in tracked}


def _env() -> dict[str, str]:
    """The environment of a new terminal: no Open MPI settings, no venv on PATH; a TMPDIR of its own, as for
    every launch of the tests (conftest.mpi_env)."""
    venv_bin = str(ROOT / ".venv" / "bin")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_", "PRTE_", "PMIX_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env["TMPDIR"] = fresh_tmpdir()
    return env


@pytest.mark.parametrize("page,number,lang,preamble,text", BLOCKS,
                         ids=[f"{b[0]}#{b[1]}" for b in BLOCKS])
def test_documented_block_runs(clone, page, number, lang, preamble, text):
    copy, _ = clone
    reason = _need(text)
    if reason:
        pytest.skip(f"{page} block {number}: {reason}")
    if lang == "python":
        cmd, stdin = [str(copy / ".venv" / "bin" / "python"), "-"], text
    else:
        cmd, stdin = ["bash", "-e", "-o", "pipefail", "-c", f"{preamble}\n{text}"], None
    done = subprocess.run(cmd, input=stdin, cwd=copy, capture_output=True, text=True, env=_env(), timeout=600)
    assert done.returncode == 0, (f"{page}, code block {number} failed (exit {done.returncode}):\n{text}\n"
                                  f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}")


def test_documented_commands_wrote_only_under_results(clone):
    """Runs after the blocks: tracked files unchanged, nothing new outside results/ (and Python's caches)."""
    copy, before = clone
    changed = [rel for rel, digest in before.items() if not (copy / rel).is_file() or _digest(copy / rel) != digest]
    assert not changed, f"documented commands changed tracked files: {changed}"
    new = []
    for path in copy.rglob("*"):
        rel = path.relative_to(copy).as_posix()
        if path.is_dir() or rel in before or rel.startswith(("results/", ".venv", *AFTER_DEMO)):
            continue
        if "__pycache__" in rel.split("/"):
            continue
        new.append(rel)
    assert not new, f"documented commands wrote outside results/: {sorted(new)[:20]}"


def test_relative_links_resolve():
    broken = []
    for page in [*PAGES, ROOT / "CHANGELOG.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not re.match(r"[a-z]+:", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)
