"""One configuration of exp.py, run with a variant's package first on PYTHONPATH: decode only here, then
`batchscore score` end to end in a child; prints one JSON line (with the variant's timers, if it has them)."""
import json, os, subprocess, sys, time
from pathlib import Path

import batchscore
from batchscore.gpudecode import GpuDecoder
from batchscore.pipeline import batches, decode_executor, default_prefetch
from batchscore.preprocess import Preprocess
from batchscore.sources import list_items

name, lanes, work, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
readers = int(sys.argv[5]) if len(sys.argv) > 5 else 2
library = sys.argv[6] if len(sys.argv) > 6 else "nvimgcodec"
res = {"name": name, "lanes": lanes, "library": library, "pkg": batchscore.__file__}
items = list_items([work / "images"])
spec = Preprocess()
dec = GpuDecoder(0, 1.0, library, os.cpu_count(), lanes)
dec.probe()
if hasattr(dec, "warm_up"):  # as scoring opens it, where the variant has it
    dec.warm_up(list_items([work / "images"])[:256], Preprocess())
if hasattr(dec, "start_readers"):  # read processes, as scoring starts them, where the variant has them
    dec.start_readers(readers, print)
with decode_executor(readers) as pool:
    t = time.perf_counter()
    n = 0
    for b in batches(items, spec, 256, pool, default_prefetch(readers, 256, lanes), gpu=dec):
        r = getattr(b, "ready", None)  # variant C's batches carry their event; later code waits before yielding
        if r is not None:
            r.synchronize()
        n += len(b.keys)
    res["decode_only_img_s"] = round(n / (time.perf_counter() - t), 1)
dec.close()
from batchscore import gpudecode
res["decode_only_timing"] = dict(getattr(gpudecode, "_T", {}))
getattr(gpudecode, "_T", {}).clear()
out.mkdir(exist_ok=True)
tf = out / f"timing-{name}.jsonl"
tf.unlink(missing_ok=True)
o = work / f"out-{name}"
cmd = [sys.executable, "-m", "batchscore", "score", "--job", str(work / "job.toml"), "--decode", "gpu",
       "--gpu-decoder", library, "--gpu-decode-threads", str(lanes), "--workers", str(readers), "--output", str(o),
       "--overwrite"]
t0 = time.perf_counter()
p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "EXP_TIMING": str(tf)})
res["e2e_call_s"] = round(time.perf_counter() - t0, 2)
res["log"] = [line[-400:] for line in p.stderr.splitlines() if "ready in" in line or "decoders:" in line]
if p.returncode:
    res["error"] = p.stderr[-1500:]
else:
    s = json.loads((o / "summary.json").read_text())
    rk = s["per_rank"][0]
    res.update(e2e_img_s=s["aggregate_images_per_s"], steady=s.get("steady_images_per_s"),
               first=s.get("first_batch_seconds"), stages=rk["stages"], busy=rk.get("busy_fraction"),
               wall=s.get("wall_seconds"))
    res["e2e_timing"] = json.loads(tf.read_text().splitlines()[-1]) if tf.exists() else None
print(json.dumps(res), flush=True)
