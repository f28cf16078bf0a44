"""One GPU, one rank against two ranks sharing it (share_gpus), end to end, in alternating rounds; optionally each
also under MPS. `batchscore score --decode gpu --workers 1` on the 32,768 JPEGs and the job of exp.py / .carry/prof.py
(/tmp/exp), each run under `mpirun --bind-to none`.

Why: with the fused engine, one rank's GPU decoder is the bound (about 14k 500x375 JPEGs a second, the engine about
32k), and a second rank brings a second decoder thread, with an interpreter lock of its own. Two processes' CUDA
contexts time-slice the GPU unless MPS runs (probe_two_procs.py), so both ways are measured.

    python benchmarks/gpu/ab/ranks_per_gpu.py ROUNDS [mps]      # writes $OUT/ranks-per-gpu.json
"""
import json, os, shutil, subprocess, sys, time
from pathlib import Path

WORK, OUT = Path("/tmp/exp"), Path(os.environ.get("OUT", "/tmp"))
MPS_ENV = {"CUDA_MPS_PIPE_DIRECTORY": "/tmp/mps", "CUDA_MPS_LOG_DIRECTORY": "/tmp/mpslog"}


def mps(start: bool) -> None:
    """Start or stop an MPS control daemon of this job's own (its pipe directory), as an sbatch script would."""
    env = {**os.environ, **MPS_ENV}
    if start:
        for folder in MPS_ENV.values():
            os.makedirs(folder, exist_ok=True)
        subprocess.run(["nvidia-cuda-mps-control", "-d"], env=env, check=True)
    else:
        subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, env=env)
        time.sleep(2)


def score(ranks: int, under_mps: bool) -> dict:
    """One scoring run; its summary's aggregate, steady rate and per-rank stages."""
    out = WORK / f"out-ranks{ranks}{'-mps' if under_mps else ''}"
    shutil.rmtree(out, ignore_errors=True)
    job = WORK / "job.toml"
    if ranks > 1:
        job = WORK / "job-share.toml"
        job.write_text((WORK / "job.toml").read_text() + "share_gpus = true\n")
    cmd = ["mpirun", "--allow-run-as-root", "--bind-to", "none", "-n", str(ranks), sys.executable, "-m", "batchscore",
           "score", "--job", str(job), "--decode", "gpu", "--workers", "1", "--output", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=150,
                          env={**os.environ, **(MPS_ENV if under_mps else {})})
    row = {"ranks": ranks, "mps": under_mps, "call_s": round(time.perf_counter() - start, 1)}
    if proc.returncode:
        return {**row, "error": proc.stderr[-1500:]}
    summary = json.loads((out / "summary.json").read_text())
    keys = ("images_per_s", "first_batch_seconds", "stages", "busy_fraction", "bound")
    return {**row, "e2e_img_s": summary["aggregate_images_per_s"], "steady_img_s": summary.get("steady_images_per_s"),
            "per_rank": [{k: rank.get(k) for k in keys} for rank in summary["per_rank"]]}


def main() -> None:
    rounds, with_mps = int(sys.argv[1]), "mps" in sys.argv[2:]
    results = {"runs": []}
    try:
        for r in range(rounds):
            for under_mps in (False, True) if with_mps else (False,):
                if under_mps:
                    mps(True)
                try:
                    for ranks in (1, 2):
                        row = {"round": r, **score(ranks, under_mps)}
                        results["runs"].append(row)
                        print(json.dumps({k: row.get(k) for k in ("round", "ranks", "mps", "e2e_img_s", "steady_img_s",
                                                                  "call_s", "error")}), flush=True)
                        (OUT / "ranks-per-gpu.json").write_text(json.dumps(results, indent=1))
                finally:
                    if under_mps:
                        mps(False)
    finally:
        left = subprocess.run(["pgrep", "-l", "nvidia-cuda-mps"], capture_output=True, text=True).stdout
        print("MPS processes left:", left.strip() or "none", flush=True)


if __name__ == "__main__":
    main()
