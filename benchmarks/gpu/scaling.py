"""Scaling over GPUs: the same archive scored on 1 and on N GPUs (one MPI rank each, or --ranks-per-gpu K sharing
each GPU), from the summaries.

Makes an archive (a tar of generated images repeated under distinct names; all JPEG by default), a
ResNet-50 ONNX turned into the FP16 file that precision = "fp16" scores, and a job naming that file with
precision = "fp32" (the same engine path, without the accuracy gate that would run both models on the CPU
before every run: a minute of ResNet-50 on 200 images). Then it runs mpirun on one GPU and on N with the same
per-rank settings (decode workers, batch, compile mode, binding) and reports each run's aggregate images/s
from summary.json and their ratio, end to end and after each rank's first batch (`steady_images_per_s`: the
pipeline's fill-up left out). Results: `one_gpu` and `N_gpus` (`one_rank` and `N_ranks` in files before
2026-11-30); each run's summary.json is kept beside them, for `python -m batchscore report` (scaling.png).

    python benchmarks/gpu/scaling.py --ranks 2 --decode gpu --out $OUT    # writes scaling-gpu.json
    python benchmarks/gpu/scaling.py --root /tmp/before --name before ...  # another checkout's batchscore
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from common import arg_parser, machine, resnet50_onnx, write_results

ROOT = Path(__file__).resolve().parents[2]


def make_archive(work: Path, images: int, unique: int, jpeg: bool) -> Path:
    """A tar of `images` members cycling over `unique` generated images (decode cost as for real ones), all
    JPEG (an ImageNet-like archive: the GPU decoder takes every image) or, without `jpeg`, the sample's mix
    (a fifth PNG, which the GPU decoders leave to the CPU workers)."""
    tar_path = work / f"archive-{'jpeg' if jpeg else 'sample'}-{images}.tar"
    if tar_path.exists():
        return tar_path
    sys.path.insert(0, str(ROOT / "data"))
    from make_sample import generate
    from PIL import Image

    generate(work / "unique", unique, seed=1)
    files = sorted(p for p in (work / "unique").rglob("*") if p.suffix in (".jpg", ".png"))
    blobs = [(f.suffix, f.read_bytes()) for f in files]
    if jpeg:
        for i, (suffix, data) in enumerate(blobs):
            if suffix != ".jpg":
                buffer = io.BytesIO()
                Image.open(io.BytesIO(data)).convert("RGB").save(buffer, "JPEG", quality=90)
                blobs[i] = (".jpg", buffer.getvalue())
    with tarfile.open(tar_path.with_suffix(".part"), "w") as tar:
        for i in range(images):
            suffix, data = blobs[i % len(blobs)]
            info = tarfile.TarInfo(f"img{i:07d}{suffix}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    os.replace(tar_path.with_suffix(".part"), tar_path)
    return tar_path


def run(ranks: int, job: Path, output: Path, workers: int, mpirun: str, root: Path = ROOT,
        placing: str = "--bind-to none", gpus: str | None = None, keep: Path | None = None) -> dict:
    """One scoring run under `mpirun -n ranks` with `placing` (mpirun's binding options), on the GPUs `gpus`
    lists (CUDA_VISIBLE_DEVICES), else all; its summary.json copied to `keep` (for `batchscore report`)."""
    shutil.rmtree(output, ignore_errors=True)
    cmd = [mpirun, "--allow-run-as-root", *shlex.split(placing), "-n", str(ranks), sys.executable, "-m",
           "batchscore", "score", "--job", str(job), "--output", str(output), "--workers", str(workers)]
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": gpus} if gpus is not None else {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env=env)  # `-m`: batchscore from root
    print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n", flush=True)
    proc.check_returncode()
    summary = json.loads((output / "summary.json").read_text())
    if keep is not None:
        shutil.copyfile(output / "summary.json", keep)
    keys = ("rank", "device", "images_per_s", "first_batch_seconds", "steady_images_per_s", "stages")
    return {"aggregate_img_s": summary["aggregate_images_per_s"], "scoring_seconds": summary["scoring_seconds"],
            "steady_img_s": summary.get("steady_images_per_s"),
            "first_batch_seconds": summary.get("first_batch_seconds"),
            "images": summary["images"]["scored_this_run"],
            "per_rank": [{k: r.get(k) for k in keys} for r in summary["per_rank"]]}


def main() -> None:
    ap = arg_parser(__doc__, "/tmp/batchscore-scaling")
    ap.add_argument("--ranks", type=int, default=2, help="GPUs of the larger run")
    ap.add_argument("--ranks-per-gpu", type=int, default=1, help="ranks sharing each GPU (share_gpus = true)")
    ap.add_argument("--placing", default="--bind-to none",
                    help="mpirun's binding options, e.g. '--map-by slot:PE=16 --bind-to core' (16 cores a rank)")
    ap.add_argument("--images", type=int, default=32768)
    ap.add_argument("--unique", type=int, default=512)
    ap.add_argument("--workers", type=int, default=14, help="decode processes per rank, the same in both runs")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--compile", default="eager")
    ap.add_argument("--decode", default="cpu", help="the job's decode setting: cpu, gpu or auto")
    ap.add_argument("--images-from", choices=("jpeg", "sample"), default="jpeg",
                    help="jpeg: every image a JPEG; sample: the sample's mix, a fifth PNG (decoded on the CPU)")
    ap.add_argument("--mpirun", default=shutil.which("mpirun") or "mpirun")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout whose batchscore scores (a before/after)")
    ap.add_argument("--name", default="", help="appended to the result file's name")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    archive = make_archive(args.work, args.images, args.unique, args.images_from == "jpeg")
    model = args.work / "resnet50-fp16.onnx"
    if not model.is_file():
        from batchscore.precision import quantize

        quantize(resnet50_onnx(args.work / "resnet50.onnx"), model, "fp16")
    job = args.work / "job.toml"
    job.write_text(f'input = "{archive}"\nmodel = "{model}"\noutput = "{args.work / "out"}"\nbackend = "torch"\n'
                   f'precision = "fp32"\nbatch_size = {args.batch_size}\ncompile = "{args.compile}"\n'
                   f'cache_dir = "{args.work / "cache"}"\ntop_k = 5\ndecode = "{args.decode}"\n'
                   f'share_gpus = {str(args.ranks_per_gpu > 1).lower()}\n')
    results: dict = {"machine": machine(), "images": args.images, "images_from": args.images_from,
                     "workers_per_rank": args.workers, "batch_size": args.batch_size, "compile": args.compile,
                     "decode": args.decode, "root": str(args.root), "placing": args.placing,
                     "ranks_per_gpu": args.ranks_per_gpu, "model": "ResNet-50 (seeded) FP16 file, scored as it is"}
    name = f"scaling-{args.decode}{'-' + args.name if args.name else ''}"
    k = args.ranks_per_gpu
    results["one_gpu"] = run(k, job, args.work / "out1", args.workers, args.mpirun, args.root, args.placing,
                             gpus=None if k == 1 else "0", keep=args.out / f"{name}-summary-1gpu.json")
    write_results(args.out, name, results, show=False)
    results[f"{args.ranks}_gpus"] = run(args.ranks * k, job, args.work / f"out{args.ranks}", args.workers,
                                        args.mpirun, args.root, args.placing,
                                        keep=args.out / f"{name}-summary-{args.ranks}gpus.json")
    many, one = results[f"{args.ranks}_gpus"], results["one_gpu"]
    results["speedup"] = round(many["aggregate_img_s"] / one["aggregate_img_s"], 3)
    if one["steady_img_s"] and many["steady_img_s"]:
        results["steady_speedup"] = round(many["steady_img_s"] / one["steady_img_s"], 3)
    write_results(args.out, name, results)


if __name__ == "__main__":
    main()
