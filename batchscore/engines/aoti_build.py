"""The child process that builds the torch backend's AOTInductor package (compile = "compiled").

`torch_backend.build_package` runs `python -m batchscore.engines.aoti_build SOURCE PACKAGE ...` with `CXX`
naming its compiler wrapper. SOURCE is the ONNX model, converted here as the engine converts it and
exported at the batch's static shape, or a program saved by `torch.export.save`.

Why a child process, from the H100 runs (docs/gpu.md): Inductor reads `CXX` once, when its config is first
imported, which in this fresh process is here (patching `cpp.cxx` in a running process gave packages that
crashed on every load); and packages that loaded in fresh processes crashed when loaded in the process that
had converted and exported the model. So the rank's process converts nothing and only loads the package.
Nothing here starts MPI: this runs as the child of an MPI rank.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch._inductor

from ..model import inspect_model
from .torch_backend import DTYPES, convert


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="an ONNX model, or a .pt2 program from torch.export.save")
    ap.add_argument("package", type=Path)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--precision", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--device", type=int, default=-1, help="CUDA device index; -1: the CPU")
    ap.add_argument("--configs", default="{}", help="Inductor settings, JSON")
    args = ap.parse_args(argv)
    if args.source.suffix == ".pt2":
        program = torch.export.load(args.source)
    else:
        device = torch.device("cuda", args.device) if args.device >= 0 else torch.device("cpu")
        module = convert(args.source, DTYPES[args.precision], device)
        example = torch.zeros((args.batch, *inspect_model(args.source).input_shape[1:]), device=device)
        with torch.no_grad():
            program = torch.export.export(module, (example,))
    torch._inductor.aoti_compile_and_package(program, package_path=str(args.package),
                                             inductor_configs=json.loads(args.configs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
