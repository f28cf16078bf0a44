"""batchscore against the scripts a user would otherwise write, side by side on one archive and one model.

Contenders, each a process of its own, run in alternating rounds over the same files:
- `batchscore score` with its defaults, and with the best settings for the device (--best, repeatable);
- a DataLoader script: torch's DataLoader with a worker per core, Pillow and torchvision's transforms, the
  model in ONNX Runtime (cpu) or as an FP16 channels-last PyTorch module, eager (cuda);
- cuda: a script with torchvision's batched GPU `decode_jpeg` and a per-image resize; the GPU decoder's own
  batched rate (nvImageCodec, bytes already in memory, no resize) with batchscore's decoder options and with
  nvImageCodec's defaults; the engine alone;
- cpu: Ray Data as its batch-inference guide recommends (read_images, then map_batches with an ONNX Runtime
  callable class), when ray is installed.
Each rate is images over the scoring loop (start-up excluded: batchscore's own aggregate images/s); peak memory
is the peak summed resident memory of the contender's process tree. Printed: the median round of each, its
ratio to the DataLoader script and to the decoder, top-1 agreement with batchscore's defaults; JSON beside it.

    python benchmarks/peers.py --device cpu --images 2048 --rounds 5 --out results/peers
    python benchmarks/peers.py --device cuda --images 16384 --rounds 3 --out $OUT
    python benchmarks/peers.py --device cuda --uniform 500x375 ...    # the one-size archive as a second line
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(HERE / "gpu")]
from photos import make_archive, size  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---------------------------------------------------------------- the harness: processes, memory, rounds
def tree_rss(pid: int) -> int:
    """Summed resident bytes of `pid` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * page
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, ()))
    return total


def run_contender(cmd: list[str], result: Path, timeout: float) -> dict:
    """Run one contender; its rate and top-1 from the JSON it leaves in `result`, its peak tree memory sampled."""
    result.unlink(missing_ok=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    sampler.join()
    if proc.returncode or not result.is_file():
        print(f"$ {' '.join(cmd)}\n{out[-3000:]}", flush=True)
        return {"error": f"exit {proc.returncode}: {out[-400:]}"}
    return {**json.loads(result.read_text()), "peak_mb": round(peak[0] / 2**20)}


def batchscore_cmd(args: argparse.Namespace, model: Path, out: Path, extra: list[str]) -> list[str]:
    """`batchscore score` on a job file that names only the archive, the model and the output, so every other
    setting is batchscore's default (without --job it would take the bundled sample's job and its settings)."""
    job = out.with_suffix(".toml")
    job.parent.mkdir(parents=True, exist_ok=True)
    job.write_text(f'input = "{args.archive}"\nmodel = "{model}"\noutput = "{out}"\n')
    return [sys.executable, "-m", "batchscore", "score", "--job", str(job), "--overwrite", *extra]


def batchscore_result(out: Path, result: Path) -> None:
    """What a batchscore run leaves, in the contenders' form: rate over its scoring time and top-1 per key."""
    import h5py

    summary = json.loads((out / "summary.json").read_text())
    with h5py.File(out / "scores.h5", "r") as f:
        keys = list(f["key"].asstr()[:])
        top1 = f["topk_index"][:, 0].tolist()
    rank = summary["per_rank"][0]
    result.write_text(json.dumps({"images": summary["images"]["total"], "img_s": summary["aggregate_images_per_s"],
                                  "bound": rank.get("bound"), "stages": rank.get("stages"),
                                  "backend": f"{summary.get('backend')}: {summary.get('backend_reason')}",
                                  "settings": {k: summary.get(k) for k in ("batch_size", "decode", "compile")},
                                  "top1": dict(zip(keys, top1))}))


# ---------------------------------------------------------------- the contenders that are scripts
def files(archive: Path) -> list[Path]:
    return sorted(p for p in archive.rglob("*.jpg"))


def report_rate(result: Path, archive: Path, keys: list[str], top1: list[int], seconds: float) -> None:
    result.write_text(json.dumps({"images": len(keys), "img_s": round(len(keys) / seconds, 1),
                                  "top1": {str(Path(k).relative_to(archive)): int(t) for k, t in zip(keys, top1)}}))


def seeded_module(device: str):  # noqa: ANN201 - torch is imported here only
    """The scripts' model on the GPU: the same seeded ResNet-50 as the ONNX file, FP16, channels-last, eager."""
    import torch
    from common import seeded_resnet50

    return seeded_resnet50().to(device).half().to(memory_format=torch.channels_last).eval()


def dataloader_script(args: argparse.Namespace) -> None:
    """A DataLoader script as its tutorials write it: Pillow + torchvision transforms in worker processes."""
    import torch
    from PIL import Image
    from torchvision import transforms

    paths = files(args.archive)
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize(MEAN, STD)])

    class Files(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int):  # noqa: ANN204
            return tf(Image.open(paths[i]).convert("RGB"))

    cuda = args.device == "cuda"
    loader = torch.utils.data.DataLoader(Files(), batch_size=args.batch_size, num_workers=args.workers,
                                         pin_memory=cuda, persistent_workers=False)
    if cuda:
        model = seeded_module("cuda")
        run = lambda x: model(x.cuda(non_blocking=True).half().contiguous(memory_format=torch.channels_last))  # noqa: E731
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        run = lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])  # noqa: E731
    top1: list[int] = []
    with torch.inference_mode():
        start = time.perf_counter()
        for x in loader:
            top1.extend(run(x).argmax(1).tolist())
        if cuda:
            torch.cuda.synchronize()
    report_rate(args.result, args.archive, [str(p) for p in paths], top1, time.perf_counter() - start)


def decode_jpeg_script(args: argparse.Namespace) -> None:
    """A GPU-decode script: read in threads, torchvision's batched decode_jpeg on the GPU, resize each image."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import functional as F

    paths = files(args.archive)
    model = seeded_module("cuda")
    mean = torch.tensor(MEAN, device="cuda").view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device="cuda").view(1, 3, 1, 1) * 255
    read = lambda p: torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8)  # noqa: E731
    top1: list[int] = []
    with ThreadPoolExecutor(args.workers) as pool, torch.inference_mode():
        chunks = [paths[i:i + args.batch_size] for i in range(0, len(paths), args.batch_size)]
        reads = pool.map(lambda chunk: [read(p) for p in chunk], chunks)
        start = time.perf_counter()
        for data in reads:
            images = decode_jpeg(data, mode=ImageReadMode.RGB, device="cuda")
            x = torch.stack([F.center_crop(F.resize(im, [256], antialias=True), [224]) for im in images])
            x = ((x.float() - mean) / std).half().contiguous(memory_format=torch.channels_last)
            top1.extend(model(x).argmax(1).tolist())
        torch.cuda.synchronize()
    report_rate(args.result, args.archive, [str(p) for p in paths], top1, time.perf_counter() - start)


# The options batchscore's C decoder passes: chroma upsampled without interpolation (decision 0016).
BATCHSCORE_DECODER_OPTIONS = ":fancy_upsampling=0"


def decoder_alone(args: argparse.Namespace, options: str = BATCHSCORE_DECODER_OPTIONS) -> None:
    """The GPU decoder's own rate: nvImageCodec's batched decode of bytes already in memory, no resize."""
    import torch
    from nvidia import nvimgcodec

    paths = files(args.archive)
    decoder = nvimgcodec.Decoder(device_id=0, options=options)
    data = [nvimgcodec.CodeStream(p.read_bytes()) for p in paths]
    chunks = [data[i:i + args.batch_size] for i in range(0, len(data), args.batch_size)]
    stream = torch.cuda.current_stream().cuda_stream
    decoder.decode(chunks[0], cuda_stream=stream)
    torch.cuda.synchronize()
    start = time.perf_counter()
    decoded = sum(sum(im is not None for im in decoder.decode(chunk, cuda_stream=stream)) for chunk in chunks)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    args.result.write_text(json.dumps({"images": decoded, "img_s": round(len(data) / seconds, 1), "top1": {}}))


def engine_alone(args: argparse.Namespace) -> None:
    """The scripts' model alone on batches already on the GPU: the ceiling of every contender."""
    import torch

    model = seeded_module("cuda")
    x = torch.randn(args.batch_size, 3, 224, 224, device="cuda").half().contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(5):
            model(x)
        torch.cuda.synchronize()
        n, start = 40, time.perf_counter()
        for _ in range(n):
            model(x)
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    args.result.write_text(json.dumps({"images": n * args.batch_size, "img_s": round(n * args.batch_size / seconds, 1),
                                       "top1": {}}))


def ray_data_script(args: argparse.Namespace) -> None:
    """Ray Data as its batch-inference guide writes it: read_images, map_batches with a callable class."""
    import numpy as np
    import ray

    class Predictor:
        def __init__(self) -> None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
            self.name = self.session.get_inputs()[0].name

        def __call__(self, batch: dict) -> dict:
            logits = self.session.run(None, {self.name: batch["image"]})[0]
            return {"path": batch["path"], "top1": logits.argmax(1)}

    def preprocess(row: dict) -> dict:
        from PIL import Image

        image = Image.fromarray(row["image"])
        w, h = image.size
        scale = 256 / min(w, h)
        image = image.resize((max(256, round(w * scale)), max(256, round(h * scale))), Image.Resampling.BILINEAR)
        left, top = (image.width - 224) // 2, (image.height - 224) // 2
        arr = np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32) / 255
        row["image"] = ((arr - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)
        return row

    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    start = time.perf_counter()
    ds = ray.data.read_images(str(args.archive), mode="RGB", include_paths=True).map(preprocess)
    rows = ds.map_batches(Predictor, batch_size=args.batch_size, concurrency=max(1, args.workers // 2)).take_all()
    seconds = time.perf_counter() - start
    ray.shutdown()  # its processes gone before the next contender starts
    keys = [str(ROOT / r["path"]) if not Path(r["path"]).is_absolute() else r["path"] for r in rows]
    report_rate(args.result, args.archive, keys, [int(r["top1"]) for r in rows], seconds)


SCRIPTS = {"dataloader": dataloader_script, "decode_jpeg": decode_jpeg_script, "decoder": decoder_alone,
           "decoder_defaults": functools.partial(decoder_alone, options=""),
           "engine": engine_alone, "ray": ray_data_script}


# ---------------------------------------------------------------- the rounds and the table
def contenders(args: argparse.Namespace, model: Path, work: Path) -> dict[str, list[str]]:
    """Name -> command; batchscore's runs leave their summary, the scripts their JSON, in WORK."""
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--archive", str(args.archive), "--model", str(model), "--device", args.device,
              "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
    found = {"batchscore_defaults": [], **{f"batchscore_best{i or ''}": best.split()
                                           for i, best in enumerate(args.best)}}
    cmds = {name: batchscore_cmd(args, model, work / name, extra) for name, extra in found.items()}
    if args.before:  # the earlier tree first on the path; -P: not this checkout from the working folder
        path = os.pathsep.join([str(args.before.resolve()), os.environ.get("PYTHONPATH", "")])
        python, *rest = batchscore_cmd(args, model, work / "before_best", args.best[0].split())
        cmds["before_best"] = ["env", f"PYTHONPATH={path}", python, "-P", *rest]
    gpu_scripts = ["decode_jpeg", "decoder", "decoder_defaults", "engine"]
    scripts = ["dataloader"] + (gpu_scripts if args.device == "cuda" else [])
    if args.device == "cpu" and args.ray:
        scripts.append("ray")
    for script in scripts:
        cmds[script] = [*me, "--script", script, "--result", str(work / f"{script}.json"), *common]
    return cmds


def prepare_model(args: argparse.Namespace, work: Path) -> Path:
    """cpu: the sample model; cuda: the seeded ResNet-50 as the FP16 file batchscore's quantize makes."""
    if args.device == "cpu":
        return (ROOT / "data" / "model.onnx") if args.model is None else args.model
    from common import resnet50_onnx

    from batchscore.precision import quantize

    fp16 = work / "resnet50-fp16.onnx"
    if not fp16.is_file():
        quantize(resnet50_onnx(work / "resnet50.onnx"), fp16, "fp16")
    return fp16


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--uniform", type=size, metavar="WxH", help="one-size archive instead of mixed photographs")
    ap.add_argument("--photos", type=Path, help="source photos (default: scikit-image's)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None, help="the scripts' batch (cpu 32, cuda 256)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="the scripts' decode workers")
    ap.add_argument("--best", action="append", help="batchscore options of a 'best' line (default per device)")
    ap.add_argument("--before", type=Path, metavar="DIR",
                    help="an earlier batchscore checkout (git worktree add DIR COMMIT): also run it with the first "
                         "--best options, as before_best")
    ap.add_argument("--skip", nargs="*", default=[], help="contenders to leave out, e.g. ray decoder")
    ap.add_argument("--ray", action="store_true", help="cpu: also Ray Data (pip install 'ray[data]')")
    ap.add_argument("--timeout", type=float, default=900, help="seconds a contender may take")
    ap.add_argument("--work", type=Path, default=Path("/tmp/batchscore-peers"))
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results/peers")))
    ap.add_argument("--model", type=Path)
    ap.add_argument("--archive", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--script", choices=SCRIPTS, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.batch_size = args.batch_size or (256 if args.device == "cuda" else 32)
    if args.script:  # one contender, inside its own process
        SCRIPTS[args.script](args)
        return
    args.best = args.best or (["--decode gpu --compile cudagraph --batch-size 256"] if args.device == "cuda"
                              else ["--batch-size 256"])
    args.work.mkdir(parents=True, exist_ok=True)
    args.archive = args.work / ("uniform" if args.uniform else "mixed")
    archive = make_archive(args.archive, args.images, photos=args.photos, uniform=args.uniform)
    model = prepare_model(args, args.work)
    cmds = contenders(args, model, args.work)
    if args.skip:
        cmds = {name: cmd for name, cmd in cmds.items() if name not in args.skip}
    rounds: dict[str, list[dict]] = {name: [] for name in cmds}
    results = {"device": args.device, "gpu": gpu_name(args.device), "cores": os.cpu_count(), "archive": archive,
               "model": str(model), "batch_size": args.batch_size, "best": args.best}
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"peers-{args.device}{'-uniform' if args.uniform else ''}.json"
    for r in range(args.rounds):
        for name, cmd in (cmds.items() if r % 2 == 0 else reversed(cmds.items())):  # alternate the order
            result = args.work / f"{name}.json"
            if name.startswith(("batchscore", "before")):
                res = run_contender(cmd, args.work / name / "summary.json", args.timeout)
                if "error" not in res:
                    batchscore_result(args.work / name, result)
                    res = {**json.loads(result.read_text()), "peak_mb": res["peak_mb"]}
            else:
                res = run_contender(cmd, result, args.timeout)
            rounds[name].append(res)
            print(f"round {r + 1} {name}: {res.get('img_s', res.get('error'))} img/s, peak {res.get('peak_mb')} MB",
                  flush=True)
        results.update(rounds=r + 1, contenders=summarize(rounds))  # each round's table survives a cut-off run
        out.write_text(json.dumps(results, indent=1) + "\n")
    print_table(results)


def gpu_name(device: str) -> str:
    """The GPU's name from nvidia-smi (the harness itself starts no CUDA context)."""
    if device != "cuda":
        return ""
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"],
                         capture_output=True, text=True)
    return out.stdout.strip()


def summarize(rounds: dict[str, list[dict]]) -> dict[str, dict]:
    """Each contender's median round, its range, peak memory, and top-1 agreement with batchscore's defaults."""
    ref = next((r for r in rounds.get("batchscore_defaults", []) if "top1" in r), {}).get("top1", {})
    table = {}
    for name, runs in rounds.items():
        good = [r for r in runs if "img_s" in r]
        if not good:
            table[name] = {"error": runs[-1].get("error", "no run") if runs else "no run"}
            continue
        rates = [r["img_s"] for r in good]
        top1 = good[0].get("top1", {})
        same = [top1[k] == v for k, v in ref.items() if k in top1]
        table[name] = {"img_s": statistics.median_low(rates), "min": min(rates), "max": max(rates),
                       "peak_mb": max(r["peak_mb"] for r in good), "images": good[0]["images"],
                       "top1_agree": round(sum(same) / len(same), 4) if same else None,
                       **{k: good[rates.index(statistics.median_low(rates))].get(k)
                          for k in ("bound", "stages", "backend", "settings") if k in good[0]}}
    base = table.get("dataloader", {}).get("img_s")
    decoder = table.get("decoder", {}).get("img_s")
    best = max((v.get("img_s", 0) for k, v in table.items() if k.startswith("batchscore_best")), default=0)
    for row in table.values():
        if "img_s" in row:
            row["vs_dataloader"] = round(row["img_s"] / base, 2) if base else None
            row["vs_decoder"] = round(row["img_s"] / decoder, 3) if decoder else None
    if best and "img_s" in table.get("batchscore_defaults", {}):
        table["batchscore_defaults"]["vs_best"] = round(table["batchscore_defaults"]["img_s"] / best, 3)
    return table


def print_table(results: dict) -> None:
    print(f"\n{results['device']} {results['gpu']}  {results['cores']} cores  archive: {results['archive']['count']} "
          f"images, {results['archive']['distinct_sizes']} sizes  model: {Path(results['model']).name}")
    print(f"{'contender':<22}{'img/s':>9}{'range':>17}{'peak MB':>9}{'/DataLoader':>12}{'/decoder':>9}{'top-1':>8}")
    for name, row in results["contenders"].items():
        if "error" in row:
            print(f"{name:<22}  failed: {row['error'][:90]}")
            continue
        rng = f"{row['min']:.0f}-{row['max']:.0f}"
        agree = "" if row["top1_agree"] is None else f"{row['top1_agree']:.3f}"
        print(f"{name:<22}{row['img_s']:>9.0f}{rng:>17}{row['peak_mb']:>9}{row['vs_dataloader'] or '':>12}"
              f"{row['vs_decoder'] or '':>9}{agree:>8}")


if __name__ == "__main__":
    main()
