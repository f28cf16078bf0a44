#!/usr/bin/env python
"""Train the small sample CNN on synthetic shapes and export it to data/model.onnx.

Run from the repository root (CPU only, about 5 minutes on 2 cores):

    PYTHONPATH=. python data/train.py

Training images: indices 100000.. of data/make_sample.py (seed 0), disjoint from the
demo archive (indices 0..599), which serves as the held-out set: the model never sees
it. Inputs come from batchscore.preprocess, so training matches scoring exactly.
After export the ONNX file is evaluated with onnxruntime on the 600 held-out images
and the result is written to data/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from batchscore.preprocess import Preprocess, decode, preprocess, resize_crop  # noqa: E402


def _load_make_sample():
    spec = importlib.util.spec_from_file_location("make_sample", HERE / "make_sample.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


make_sample = _load_make_sample()
CLASSES = list(make_sample.CLASSES)
TRAIN_START = 100_000


def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ShapeNet(nn.Sequential):
    """224x224 -> 2x2 average pool -> 7 conv-BN-ReLU blocks (4 strided) -> global average pool -> linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(
            nn.AvgPool2d(2),  # 112x112
            *block(3, 16, 2),  # 56
            *block(16, 32, 2),  # 28
            *block(32, 32, 1),
            *block(32, 64, 2),  # 14
            *block(64, 64, 1),
            *block(64, 96, 2),  # 7
            *block(96, 96, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(96, num_classes),
        )


def load_crops(root: Path, labels: dict[str, str], spec: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """uint8 NHWC centre crops (exactly what preprocess() normalises) and class indices."""
    keys = sorted(labels)
    x = np.empty((len(keys), spec.crop, spec.crop, 3), np.uint8)
    y = np.empty(len(keys), np.int64)
    for i, key in enumerate(keys):
        img = resize_crop(decode((root / key).read_bytes(), spec.max_pixels), spec)
        x[i] = np.asarray(img, np.uint8)
        y[i] = CLASSES.index(labels[key])
    return x, y


def to_input(batch_u8: torch.Tensor, spec: Preprocess) -> torch.Tensor:
    """Same arithmetic as batchscore.preprocess.to_tensor (RGB), batched, NCHW float32."""
    x = batch_u8.float() / 255.0
    x = (x - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    return x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def augment(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal/vertical flips (class-preserving for every class) and small shifts; NHWC uint8."""
    n = xb.shape[0]
    hf = torch.rand(n, generator=gen) < 0.5
    vf = torch.rand(n, generator=gen) < 0.5
    xb = xb.clone()
    xb[hf] = xb[hf].flip(2)
    xb[vf] = xb[vf].flip(1)
    dy, dx = (int(v) for v in torch.randint(-12, 13, (2,), generator=gen))
    return torch.roll(xb, shifts=(dy, dx), dims=(1, 2))


def evaluate_onnx(path: Path, root: Path, labels: dict[str, str], spec: Preprocess) -> tuple[float, float, np.ndarray]:
    """Top-1/top-5 of the ONNX model on files under root, preprocessed by batchscore.preprocess."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    keys = sorted(labels)
    y = np.array([CLASSES.index(labels[k]) for k in keys])
    logits = []
    for i in range(0, len(keys), 50):
        batch = np.stack([preprocess((root / k).read_bytes(), spec) for k in keys[i:i + 50]])
        logits.append(sess.run(["logits"], {"input": batch})[0])
    logits = np.concatenate(logits)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    top1 = float((top5[:, 0] == y).mean())
    top5acc = float((top5 == y[:, None]).any(axis=1).mean())
    conf = np.zeros((len(CLASSES), len(CLASSES)), np.int64)
    np.add.at(conf, (y, top5[:, 0]), 1)
    return top1, top5acc, conf


def export(model: nn.Module, path: Path, spec: Preprocess) -> None:
    model = model.eval().to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(1, 3, spec.crop, spec.crop)
    tmp = path.with_suffix(".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the classic exporter is meant here
        torch.onnx.export(
            model, (dummy,), str(tmp), dynamo=False, opset_version=17,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=True,
        )
    m = onnx.load(str(tmp))
    tmp.unlink()
    meta = {
        "classes": ",".join(CLASSES),
        "mean": ",".join(str(v) for v in spec.mean),
        "std": ",".join(str(v) for v in spec.std),
        "resize": str(spec.resize),
        "crop": str(spec.crop),
    }
    onnx.helper.set_model_props(m, meta)
    m.producer_name = "batchscore data/train.py"
    m.doc_string = "Sample shape classifier (10 synthetic classes), input RGB NCHW normalised with mean/std."
    onnx.checker.check_model(m)
    onnx.save_model(m, str(path), save_as_external_data=False)


README = """\
# Sample data and model

Everything here is synthetic and reproducible; nothing is downloaded.

## Image archive: `make_sample.py`

Pure numpy + Pillow (no torch). Renders "photos" of simple shapes:

    python data/make_sample.py --out data/sample --count 600 --seed 0

(`data/sample/` is git-ignored; these are the defaults.) Importable too:
`generate(out_dir, count, seed=0, start=0) -> {{key: class}}`.

- **Classes** ({n_classes}, index order of the model, also in `classes.txt`):
  {classes}. Image `i` has class `CLASSES[i % 10]`, so any 10 consecutive
  indices hold every class once.
- **Content**: random-colour gradient background with low-frequency blotches, 0-6
  small clutter dots/lines, Gaussian noise (sigma 0-12), 25% slightly blurred. One object per
  image, centre within +/-10% of the shorter side from the image centre and extent
  <= 38% of it, so it stays inside the 224/256 centre crop the scorer takes. Shapes are
  randomly rotated (stripes/checker only +/-10 degrees, cross +/-15); patterned classes
  are a stripe/checker texture in an upright patch (diagonal: +/-45 degree stripes).
  Object/background luma differ by >= 70, so the class is visible in grayscale and
  colour carries no class information.
- **Sizes/formats**: longer side uniform 300-640 px, short/long ratio 0.6-1.0,
  portrait or landscape; ~80% JPEG (quality 75-95, fixed per image), ~20% PNG;
  ~10% grayscale (mode "L", either format).
- **Layout**: `<out>/<class>/<class>_<index:05d>.jpg|.png` and `<out>/labels.csv`
  (`key,label`, key relative to `<out>`, sorted). Generating into a directory
  that already has images keeps their rows in `labels.csv` (e.g. `--start 600
  --count 20` to simulate new images landing).
- **Determinism**: each image depends only on (seed, index) (`numpy.random.default_rng([seed, index])`),
  so output is byte-identical for the same arguments (same Pillow/libjpeg build) and
  prefix-stable (`--count 610` gives the same first 600 files as `--count 600`).

## Model: `model.onnx`

- **Architecture** (`ShapeNet` in `train.py`): 2x2 average pool (224 -> 112), seven
  3x3 conv + BatchNorm + ReLU blocks (16-32-32-64-64-96-96 channels, four of them
  stride 2, down to 7x7), global average pool, linear 96 -> 10.
  {params:,} parameters, {macs:.0f} M multiply-adds per image.
- **File**: {size_kb:.0f} KB, single file (no external data), ONNX opset 17
  (classic exporter), input `input` float32 `[batch,3,224,224]` (dynamic batch),
  output `logits` float32 `[batch,10]`. `metadata_props`: `classes`, `mean`, `std`,
  `resize`, `crop`.
- **Input**: exactly `batchscore.preprocess.preprocess(data, Preprocess())`: RGB,
  shorter side resized to 256 (bilinear), centre crop 224, ImageNet mean/std, CHW.
- **Training**: {train_count} images, indices {train_start}..{train_end} of
  `make_sample.py` seed {seed} (disjoint from the demo archive), preprocessed with
  the package's own code, random horizontal/vertical flips and +/-12 px shifts;
  AdamW, one-cycle LR {lr}, batch {batch}, {epochs} epochs, torch {torch_version} CPU, 2 threads,
  fixed seeds. Wall time {wall_min:.1f} min on {cpu_desc} (generation + preprocessing
  {prep_s:.0f} s, training {train_s:.0f} s).
- **Command**:

      PYTHONPATH=. python data/train.py{args}

## Held-out accuracy

Measured by `train.py` on the exported ONNX file with onnxruntime {ort_version} (CPU),
on the 600 images of the demo archive (indices 0..599, seed 0, exactly what
`python data/make_sample.py` writes), never used for training, each preprocessed by
`batchscore.preprocess.preprocess`:

| set | images | top-1 | top-5 |
|---|---|---|---|
| held-out (demo archive, FP32 ONNX) | {n_held} | **{top1:.2%}** | {top5:.2%} |

Per-class held-out top-1: {per_class}.

`tests/test_sample_data.py` rechecks the committed model on freshly generated
images (top-1 >= 85% on a small sample).
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-count", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "model.onnx")
    ap.add_argument("--readme", default=str(HERE / "README.md"), help="where to write the results ('' = skip)")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    spec = Preprocess()
    (HERE / "classes.txt").write_text("".join(c + "\n" for c in CLASSES))

    with tempfile.TemporaryDirectory(prefix="batchscore-train-") as tmp:
        tmp = Path(tmp)
        print(f"generating {args.train_count} training images (start={TRAIN_START}) and 600 held-out images", flush=True)
        train_labels = make_sample.generate(tmp / "train", args.train_count, args.seed, start=TRAIN_START)
        held_labels = make_sample.generate(tmp / "heldout", 600, 0, start=0)
        x_np, y_np = load_crops(tmp / "train", train_labels, spec)
        prep_s = time.perf_counter() - t_start
        print(f"prepared {len(y_np)} crops in {prep_s:.0f} s", flush=True)

        x_all = torch.from_numpy(x_np)
        y_all = torch.from_numpy(y_np)
        model = ShapeNet(len(CLASSES)).to(memory_format=torch.channels_last)
        params = sum(p.numel() for p in model.parameters())
        steps_per_epoch = len(y_np) // args.batch
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs,
                                                    steps_per_epoch=steps_per_epoch, pct_start=0.2)
        gen = torch.Generator().manual_seed(args.seed)
        t_train = time.perf_counter()
        for epoch in range(args.epochs):
            model.train()
            perm = torch.randperm(len(y_np), generator=gen)
            tot_loss = tot_ok = seen = 0
            for s in range(steps_per_epoch):
                idx = perm[s * args.batch:(s + 1) * args.batch]
                xb = to_input(augment(x_all[idx], gen), spec)
                yb = y_all[idx]
                out = model(xb)
                loss = F.cross_entropy(out, yb, label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot_loss += float(loss.detach()) * len(idx)
                tot_ok += int((out.argmax(1) == yb).sum())
                seen += len(idx)
            print(f"epoch {epoch + 1}/{args.epochs}: loss {tot_loss / seen:.3f} train acc {tot_ok / seen:.3f} "
                  f"({time.perf_counter() - t_train:.0f} s)", flush=True)
        train_s = time.perf_counter() - t_train

        export(model, args.out, spec)
        size = args.out.stat().st_size
        top1, top5, conf = evaluate_onnx(args.out, tmp / "heldout", held_labels, spec)

    wall = time.perf_counter() - t_start
    per_class = {c: conf[i, i] / conf[i].sum() for i, c in enumerate(CLASSES)}
    print(f"model {args.out} {size / 1024:.0f} KB, {params} params")
    print(f"held-out (600 demo images, ONNX FP32): top-1 {top1:.4f} top-5 {top5:.4f}")
    print("per class:", ", ".join(f"{c} {a:.2f}" for c, a in per_class.items()))
    print("confusion (rows=true):\n", conf)
    print(f"wall time {wall:.0f} s (prep {prep_s:.0f} s, train {train_s:.0f} s)")

    if args.readme:
        flags = []
        defaults = ap.parse_args([])
        for name in ("train_count", "epochs", "batch", "lr", "seed"):
            if getattr(args, name) != getattr(defaults, name):
                flags.append(f" --{name.replace('_', '-')} {getattr(args, name)}")
        macs = _count_macs(model, spec) / 1e6
        Path(args.readme).write_text(README.format(
            n_classes=len(CLASSES), classes=", ".join(f"`{c}`" for c in CLASSES),
            params=params, macs=macs, size_kb=size / 1024, train_count=args.train_count,
            train_start=TRAIN_START, train_end=TRAIN_START + args.train_count - 1, seed=args.seed,
            lr=args.lr, batch=args.batch, epochs=args.epochs, torch_version=torch.__version__.split("+")[0],
            wall_min=wall / 60, cpu_desc="2 CPU cores", prep_s=prep_s, train_s=train_s,
            args="".join(flags), ort_version=ort.__version__, n_held=int(conf.sum()), top1=top1, top5=top5,
            per_class=", ".join(f"{c} {a:.0%}" for c, a in per_class.items()),
        ))
        print(f"wrote {args.readme}")
    return 0 if top1 >= 0.90 else 1


def _count_macs(model: nn.Module, spec: Preprocess) -> int:
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += out.numel() * k
        elif isinstance(mod, nn.Linear):
            total += mod.in_features * mod.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *spec.shape))
    for h in hs:
        h.remove()
    return total


if __name__ == "__main__":
    raise SystemExit(main())
