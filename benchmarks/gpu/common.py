"""Shared by the GPU benchmark scripts: their common options, the seeded ResNet-50 ONNX, and printing/writing
results."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path


def arg_parser(doc: str, work: str) -> argparse.ArgumentParser:
    """The options every script takes: --out (where the JSON goes: $OUT on the device machine) and --work (its
    scratch folder: generated images, models, engine cache), described by the first line of the script's `doc`."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results/gpu")))
    ap.add_argument("--work", type=Path, default=Path(work))
    return ap


def seeded_resnet50(seed: int = 0):  # noqa: ANN201 - torch is imported here only
    """torchvision's ResNet-50 with seeded random weights, in eval mode on the CPU.

    BatchNorm statistics come from a few seeded random batches (cumulative average), so activations
    stay normalised and FP16 cannot overflow as it can with untouched running statistics.
    """
    import torch
    import torchvision

    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torchvision.models.resnet50(weights=None).to(device)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    gen = torch.Generator(device).manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(64, 3, 224, 224, generator=gen, device=device))
    return model.eval().cpu()


def resnet50_onnx(path: Path, seed: int = 0) -> Path:
    """`seeded_resnet50` exported to ONNX with a dynamic batch axis (kept where an earlier call wrote it)."""
    import torch

    if path.is_file():
        return path
    model = seeded_resnet50(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.onnx.export(model, (torch.zeros(1, 3, 224, 224),), str(tmp), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    os.replace(tmp, path)
    return path


def machine() -> dict:
    """The host a result came from: CPU model, a hash of its instruction-set flags (Inductor compiles
    packages with -march=native, and package loads crashed on some machines of one kind and not on
    others) and cores, so that results from different machines can be told apart."""
    from batchscore.engines.toolchain import cpu_features

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return {"cpu": model or platform.processor(), "cpu_features": cpu_features(), "cores": os.cpu_count()}


def write_results(out: Path, name: str, results: dict, show: bool = True) -> None:
    """JSON into $OUT (or the given folder), so partial results survive; with `show`, a table on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    if not show:
        return
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}", flush=True)
