"""The GPU decoder and the engine in two processes on one GPU: each alone, then both at once, in alternating rounds.

Why: end to end, a rank's decoder thread shares the interpreter lock with its read worker and its loop, and runs at
0.7-0.9 of its decode-only rate (docs/performance.md). A decode process of its own per rank (tensors handed over by
CUDA IPC) would not share the lock, but its CUDA context would time-slice the GPU with the engine's. This measures
that cost before anything is built: process D runs the GPU decoder as scoring runs it (decode only, 1 read worker),
process E replays the engine's CUDA graph back to back (contention.EngineLoop); both report images/s over the same
seconds. Without MPS, kernels of two contexts do not run at once.

    python benchmarks/gpu/ab/probe_two_procs.py ROUNDS SECONDS [PHASES]   # after exp.py or .carry/prof.py made /tmp/exp

PHASES (default "D,E,DE"): what runs at once in each phase of a round, one letter a process; "DD" is two decode
processes side by side (each reports its own rate; their sum is the GPU's).
"""
import json, os, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
WORK = Path("/tmp/exp")


def child(role: str) -> None:
    """A D or E process: set up, say "ready", then for each "run SECONDS" line on stdin print a JSON result."""
    sys.path[:0] = [str(ROOT / "benchmarks" / "gpu"), str(ROOT)]
    os.environ.setdefault("CUDA_DEVICE_MAX_CONNECTIONS", "32")
    import torch
    if role == "E":
        from contention import EngineLoop
        from batchscore.engines import EngineOptions, create_engine
        engine = create_engine("torch", WORK / "resnet50-fp16.onnx",
                               EngineOptions(256, device=0, precision="fp32", compile="cudagraph")).activate()
    else:
        from batchscore.gpudecode import GpuDecoder
        from batchscore.pipeline import batches, decode_executor, default_prefetch
        from batchscore.preprocess import Preprocess
        from batchscore.sources import list_items
        items, spec = list_items([WORK / "images"]), Preprocess()
        gpu = GpuDecoder(0, 1.0, "nvimgcodec", os.cpu_count(), 1)
        gpu.probe()
        gpu.warm_up(items[:256], spec)
        pool = decode_executor(1).__enter__()
    print("ready", flush=True)
    for line in sys.stdin:
        seconds = float(line.split()[1])
        start = time.perf_counter()
        if role == "E":
            with EngineLoop(engine) as loop:
                time.sleep(seconds)
                rate = loop.rate()
        else:
            n = 0
            while time.perf_counter() - start < seconds:
                for b in batches(items, spec, 256, pool, default_prefetch(1, 256, 1), gpu=gpu):
                    n += len(b.keys)
                    if time.perf_counter() - start >= seconds:
                        break
            torch.cuda.synchronize()
            rate = n / (time.perf_counter() - start)
        print(json.dumps({"role": role, "img_s": round(rate, 1), "s": round(time.perf_counter() - start, 2)}),
              flush=True)


def main() -> None:
    rounds, seconds = int(sys.argv[1]), float(sys.argv[2])
    phases = (sys.argv[3] if len(sys.argv) > 3 else "D,E,DE").split(",")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_DEVICE_MAX_CONNECTIONS": "32"}
    need = {role: max(phase.count(role) for phase in phases) for role in "DE"}
    procs = {f"{role}{i}": subprocess.Popen([sys.executable, __file__, "child", role], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, text=True, env=env)
             for role, n in need.items() for i in range(n)}
    for name, p in procs.items():
        while (line := p.stdout.readline()) and line.strip() != "ready":
            pass
        print(name, "ready", flush=True)
    out = {"phases": phases, "seconds": seconds, "rounds": []}
    for i in range(rounds):
        res = {}
        for phase in phases:
            names = [f"{role}{phase[:k].count(role)}" for k, role in enumerate(phase)]
            for name in names:
                procs[name].stdin.write(f"run {seconds}\n"); procs[name].stdin.flush()
            res[phase] = {name: json.loads(procs[name].stdout.readline())["img_s"] for name in names}
        if {"D", "E", "DE"} <= set(phases):
            res["fraction_sum"] = round(res["DE"]["D0"] / res["D"]["D0"] + res["DE"]["E0"] / res["E"]["E0"], 3)
        print(i, res, flush=True)
        out["rounds"].append(res)
    for p in procs.values():
        p.stdin.close(); p.wait(timeout=60)
    Path(os.environ.get("OUT", "/tmp"), "two-procs.json").write_text(json.dumps(out, indent=1))

if __name__ == "__main__":
    child(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[1] == "child" else main()
