"""An AOTInductor package of ResNet-50, built standalone and loaded in fresh processes, several ways.

It found why such packages crashed on load, and measured the load once fixed. The probe compiles a
package from the backend's own `convert()` output (Inductor defaults unless --max-autotune), linked with
--link-flags only (the backend's -Wl,-Bsymbolic is not added here unless named). It loads the package in
fresh processes, in any of these ways:
- `direct`: the C++ loader alone, as the backend does;
- `plain`: `aoti_load_package`;
- `ulimit`: `aoti_load_package` with `ulimit -s unlimited`;
- `thread`: `aoti_load_package` in a thread with a 1 GiB stack.
Each load is timed from process start to the first batch's outputs, then the throughput (and a CUDA graph
capture) is measured. Python stacks are dumped every 10 s. `--before` makes each loading process do
something first (import modules, or convert and export the ONNX model as the builder rank once did),
to find which process states make a load crash.

On the H100 the default link crashed on every load tried (plain, ulimit, thread); with `-Wl,-Bsymbolic`
the direct load took 3.5 s (docs/gpu.md). Those runs set the link flags through the CXX variable, as the
backend's `build_package` (used here now) does in its child process.

    python benchmarks/gpu/aoti_probe.py --sources onnx --loads direct --link-flags=-Wl,-Bsymbolic --out $OUT
    python benchmarks/gpu/aoti_probe.py --sources onnx --loads direct --link-flags=-Wl,-Bsymbolic \
        --before ';onnx2torch;torchvision;convert;mpi4py.MPI,convert' --out $OUT    # which states crash a load
"""

from __future__ import annotations

import argparse
import json
import subprocess
import zipfile
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

LOADER = r"""
import faulthandler, sys, threading, time, json
faulthandler.enable(all_threads=True)
faulthandler.dump_traceback_later(10, repeat=True)  # where a slow load spends its time
start = time.time()
def say(what):
    print(f"{time.time() - start:7.2f} s {what}", file=sys.stderr, flush=True)
import torch
say("torch imported")
for step in filter(None, sys.argv[4].split(",")):  # what the process did before the load
    if step == "convert":  # as the builder rank did before build_package: ONNX conversion and export here
        from pathlib import Path
        from batchscore.engines.torch_backend import convert
        module = convert(Path(sys.argv[5]), torch.float16, torch.device("cuda", 0))
        with torch.no_grad():
            torch.export.export(module, (torch.zeros((int(sys.argv[2]), 3, 224, 224), device="cuda"),))
    else:
        __import__(step)
    say(f"{step} done")
def main():
    how = sys.argv[3]
    if how == "direct":  # the C++ loader alone: no torch._inductor, hence no Triton in the process
        loader = torch._C._aoti.AOTIModelPackageLoader(sys.argv[1], "model", False, 1, 0)
        run = lambda x: loader.run([x])
    else:
        from torch._inductor import aoti_load_package
        say("torch._inductor imported")
        run = aoti_load_package(sys.argv[1])
    say("loaded")
    loaded = time.time()
    dtype = torch.float16 if "torchvision" in sys.argv[1] else torch.float32
    x = torch.zeros((int(sys.argv[2]), 3, 224, 224), device="cuda", dtype=dtype)
    with torch.inference_mode():
        out = run(x)
        torch.cuda.synchronize()
    say("first batch")
    first = time.time()
    out = out[0] if isinstance(out, (list, tuple)) else out
    result = {"load_s": loaded - start, "first_batch_s": first - loaded, "total_s": first - start,
              "finite": bool(torch.isfinite(out).all())}
    iters = 40
    with torch.inference_mode():
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(iters):
            run(x)
        end.record()
        end.synchronize()
        result["img_s"] = x.shape[0] * iters / (begin.elapsed_time(end) / 1e3)
        try:  # as the backend runs a compiled model: captured once in a CUDA graph, replayed
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                run(x)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                run(x)
            begin.record()
            for _ in range(iters):
                graph.replay()
            end.record()
            end.synchronize()
            result["graph_img_s"] = x.shape[0] * iters / (begin.elapsed_time(end) / 1e3)
        except Exception as exc:
            result["graph_error"] = f"{type(exc).__name__}: {exc}"[:300]
    print(json.dumps(result))
if sys.argv[3] == "thread":
    threading.stack_size(1 << 30)
    t = threading.Thread(target=main); t.start(); t.join()
else:
    main()
"""

def build(model: Path, package: Path, batch: int, max_autotune: bool, source: str, link_flags: str) -> float:
    """Package the network as the backend does (its build_package: a child process converts the ONNX file,
    exports and compiles), or torchvision's, exported here and compiled by the same child."""
    from batchscore.engines.torch_backend import build_package

    start = time.perf_counter()
    if source == "torchvision":
        import torch
        import torchvision

        device = torch.device("cuda", 0)
        module = torchvision.models.resnet50(weights=None).eval().half().to(device, memory_format=torch.channels_last)
        example = torch.zeros((batch, 3, 224, 224), device=device, dtype=torch.float16)
        model = package.with_suffix(".program.pt2")
        with torch.no_grad():
            torch.export.save(torch.export.export(module, (example,)), model)
    build_package(model, package, batch, "fp16", 0, link_flags=link_flags, configs={"max_autotune": max_autotune})
    return time.perf_counter() - start


def load(package: Path, batch: int, how: str, before: str, model: Path) -> dict:
    """One fresh process loading the package and running a batch, after the `before` steps (modules to
    import, or `convert`: the ONNX model converted and exported in that process); its exit code and output."""
    loader = package.with_name("loader.py")
    loader.write_text(LOADER)
    cmd = [sys.executable, str(loader), str(package), str(batch), how, before, str(model)]
    if how == "ulimit":
        cmd = ["bash", "-c", 'ulimit -s unlimited && exec "$@"', "bash", *cmd]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    result = {"rc": proc.returncode, "wall_s": round(time.perf_counter() - start, 2)}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        result.update(json.loads(lines[-1]))
    else:
        result["stderr_head"], result["stderr_tail"] = proc.stderr[:3000], proc.stderr[-3000:]
    return result


def main() -> None:
    from common import machine, resnet50_onnx, write_results

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--name", default="aoti-probe", help="results file name, without .json")
    ap.add_argument("--work", type=Path, default=Path("/tmp/aoti-probe"))
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--sources", default="onnx,torchvision")
    ap.add_argument("--max-autotune", action="store_true")
    ap.add_argument("--link-flags", default="", help="extra g++ flags for the wrapper, e.g. -Wl,-Bsymbolic")
    ap.add_argument("--eager-baseline", action="store_true", help="also plain eager FP16 images/s, in this run")
    ap.add_argument("--loads", default="direct,plain",
                    help="direct: the C++ loader without torch._inductor; plain: aoti_load_package; ulimit: that "
                         "with an unlimited stack; thread: in a thread with a 1 GiB stack")
    ap.add_argument("--before", default="", help="what each loading process does first, one set per load, sets "
                                                 "split by ';', steps by ',': a module to import (mpi4py.MPI adds "
                                                 "OpenMPI's native backtrace to a crash), or convert, e.g. "
                                                 "';torchvision;convert'")
    args = ap.parse_args()
    model = resnet50_onnx(args.work / "resnet50.onnx")
    results: dict = {"max_autotune": args.max_autotune, "batch": args.batch_size, "link_flags": args.link_flags,
                     "machine": machine()}
    for source in args.sources.split(","):
        package = args.work / f"{source}.pt2"
        results[f"{source}_compile_s"] = round(build(model, package, args.batch_size, args.max_autotune, source,
                                                           args.link_flags), 1)
        results[f"{source}_package_mb"] = round(package.stat().st_size / 2**20, 1)
        with zipfile.ZipFile(package) as z:  # what the package holds: a compiled wrapper, or sources to build?
            results[f"{source}_package_files"] = sorted((f"{i.filename} {i.file_size}" for i in z.infolist()),
                                                        key=lambda f: -int(f.rsplit(" ", 1)[1]))[:12]
        for how in args.loads.split(","):
            for before in args.before.split(";"):
                name = f"{source}_load_{how}" + (f"_after_{before.replace(',', '_')}" if before else "")
                results[name] = load(package, args.batch_size, how, before, model)
                write_results(args.out, args.name, results, show=False)
    if args.eager_baseline:
        import torch

        from bench_engine import plain_eager

        results["plain_eager_img_s"] = round(plain_eager(args.batch_size, 40, torch.float16), 1)
    write_results(args.out, args.name, results)


if __name__ == "__main__":
    main()
