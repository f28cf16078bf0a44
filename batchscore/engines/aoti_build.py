"""The child processes that build and check the torch backend's AOTInductor package (compile = "compiled").

`torch_loaders.build_package` runs `python -m batchscore.engines.aoti_build build SOURCE PACKAGE ...` with
`CXX` naming its compiler wrapper. SOURCE is the ONNX model, converted here as the engine converts it and
exported at the batch's static shape, or a program saved by `torch.export.save`. The built package is then
loaded and run once on zeros by `... aoti_build check`, in a fresh process: a package that crashes on load
(as every one did before `-Bsymbolic`) is deleted and the build fails with that reason, instead
of entering the cache and crashing every rank and every later run.

Why a child process (docs/dev/decisions/0010): Inductor reads `CXX` once, when its config is first
imported, which in this fresh process is here (patching `cpp.cxx` in a running process gave packages that
crashed on every load); and packages that loaded in fresh processes crashed when loaded in the process that
had converted and exported the model. So the rank's process converts nothing and only loads the package.
Nothing here starts MPI: this runs as the child of an MPI rank.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from ..model import inspect_model
from .torch_loaders import DTYPES, convert, exit_reason, load_aoti


def _device(index: int) -> torch.device:
    return torch.device("cuda", index) if index >= 0 else torch.device("cpu")


def build(source: Path, package: Path, batch: int, precision: str, device: int, configs: dict) -> int:
    """Export (or load) the program, compile it into `package`, then check the package in a fresh process."""
    import torch._inductor

    if source.suffix == ".pt2":
        program = torch.export.load(source)
    else:
        example = torch.zeros((batch, *inspect_model(source).input_shape[1:]), device=_device(device))
        with torch.no_grad():
            program = torch.export.export(convert(source, DTYPES[precision], _device(device)), (example,))
    shape = tuple(program.example_inputs[0][0].shape)
    torch._inductor.aoti_compile_and_package(program, package_path=str(package), inductor_configs=configs)
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-m", __spec__.name, "check", str(package),
                           "--device", str(device), "--shape", *map(str, shape)], capture_output=True, text=True)
    if proc.returncode:  # faulthandler puts a crash's Python stack on stderr: which call crashed
        package.unlink(missing_ok=True)
        last = [line.strip() for line in proc.stderr.strip().splitlines()[-8:]] or ["no output"]
        sys.exit(f"the package was built, but loading it in a fresh process failed ({exit_reason(proc.returncode)})"
                 f": {' | '.join(last)[-1200:]}")
    return 0


def check(package: Path, shape: list[int], device: int) -> int | str:
    """Load the package and run one batch of zeros on `device` (-1: the CPU); 0, or what went wrong."""
    (out, *_) = load_aoti(package, device)(torch.zeros(shape, device=_device(device)))
    if device >= 0:
        torch.cuda.synchronize(device)
    return 0 if out.shape[0] == shape[0] else f"the package gave {tuple(out.shape)} for an input of {shape}"


def main(argv: list[str] | None = None) -> int | str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = ap.add_subparsers(dest="step", required=True)
    b = steps.add_parser("build")
    b.add_argument("source", type=Path, help="an ONNX model, or a .pt2 program from torch.export.save")
    b.add_argument("package", type=Path)
    b.add_argument("--batch", type=int, required=True)
    b.add_argument("--precision", choices=sorted(DTYPES), default="fp32")
    b.add_argument("--configs", default="{}", help="Inductor settings, JSON")
    c = steps.add_parser("check")
    c.add_argument("package", type=Path)
    c.add_argument("--shape", type=int, nargs="+", required=True)
    for p in (b, c):
        p.add_argument("--device", type=int, default=-1, help="CUDA device index; -1: the CPU")
    args = ap.parse_args(argv)
    if args.step == "check":
        return check(args.package, args.shape, args.device)
    return build(args.source, args.package, args.batch, args.precision, args.device, json.loads(args.configs))


if __name__ == "__main__":
    raise SystemExit(main())
