"""Patched copies of the batchscore package for side-by-side A/B runs on a GPU (exp.py); not part of the tool.

`python make_variants.py head` at commit 8f7363a made A (timers in the GPU decoder thread and the rank loop),
B (A + high-priority decoder streams) and C (B + hand-over with the resize still queued). `tree` at 95e3143
made N (that commit, as it is), P (N + high-priority decoder streams) and S (N + a 1 ms interpreter switch
interval); `stubs` made T (N without the top-k: zeros instead) and X (N without the engine: zero logits instead
of inference), to see what the loop's top-k and the engine cost end to end. The patches match those commits'
text and fail loudly on any other.
Results: benchmarks/gpu/results/h200-ab-*.json, docs/performance.md."""
import shutil, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
OUT = Path(__file__).resolve().parent / "v"

def sub(text, old, new, count=1):
    assert text.count(old) == count, (old, text.count(old))
    return text.replace(old, new)

INSTR = '''
import atexit as _atexit, json as _json
_T = defaultdict(float)
_TL = threading.Lock()
def _add(**kw):
    with _TL:
        for k, v in kw.items():
            _T[k] += v
def _dump():
    p = os.environ.get("EXP_TIMING")
    if p and _T:
        with open(p, "a") as f:
            f.write(_json.dumps({"pid": os.getpid(), **_T}) + "\\n")
_atexit.register(_dump)
'''

def thread_timers(g):
    """gpudecode.py's text with timers in GpuDecoder._decode: waiting for the reads, the decode step, the resize."""
    g = sub(g, """        torch = self.torch
        errors, read_s = [""] * k, read_ahead_seconds(ahead)""", """        torch = self.torch
        _a, _c = time.perf_counter(), time.thread_time()
        errors, read_s = [""] * k, read_ahead_seconds(ahead)""")
    g = sub(g, """        start = time.perf_counter()
        counts: dict[str, int] = defaultdict(int)""", """        start = time.perf_counter()
        _add(reads_wait=start - _a)
        counts: dict[str, int] = defaultdict(int)""")
    g = sub(g, """            resize_crop_normalise(out, decoded, spec)
            waited = time.perf_counter()""", """            _r = time.perf_counter()
            resize_crop_normalise(out, decoded, spec)
            waited = time.perf_counter()
            _add(decode_step=_r - start, resize=waited - _r)""")
    return g


def make(name, prio=False, nosync=False):
    dst = OUT / name / "batchscore"
    if dst.parent.exists():
        shutil.rmtree(dst.parent)
    shutil.copytree(ROOT / "batchscore", dst, ignore=shutil.ignore_patterns("__pycache__"))
    g = (dst / "gpudecode.py").read_text()
    g = sub(g, "\nif TYPE_CHECKING:\n    import torch\n", "\nif TYPE_CHECKING:\n    import torch\n" + INSTR)
    # nvimgcodec call vs wrap
    g = sub(g, """            try:
                images = decoder.decode([streams[i] for i in pending], params=self.params,
                                        cuda_stream=stream.cuda_stream)
            except RuntimeError:  # the whole call failed: the next step tries every image again
                images = [None] * len(pending)
""", """            _t0 = time.perf_counter()
            try:
                images = decoder.decode([streams[i] for i in pending], params=self.params,
                                        cuda_stream=stream.cuda_stream)
            except RuntimeError:  # the whole call failed: the next step tries every image again
                images = [None] * len(pending)
            _t1 = time.perf_counter()
""")
    g = sub(g, """            pending = [i for i in pending if out[i][0] is None]
        return out
""", """            pending = [i for i in pending if out[i][0] is None]
            _add(hw_call=_t1 - _t0, wrap=time.perf_counter() - _t1)
        return out
""")
    g = thread_timers(g)
    if nosync:
        g = sub(g, """            lane.stream.synchronize()  # ready for the engine's streams once handed over
""", """            _s = time.perf_counter()
            ready = torch.cuda.Event()
            ready.record(lane.stream)
            _add(after_resize=_s - waited, sync=time.perf_counter() - _s)
""")
        g = sub(g, """        return Batch([it.key for it in chunk], tensors, errors, read_s + cpu.read_seconds, cpu.decode_seconds,
                     decoders=dict(counts), gpu_seconds=gpu_seconds)""", """        _add(total=time.perf_counter() - _a, cpu=time.thread_time() - _c, batches=1)
        b = Batch([it.key for it in chunk], tensors, errors, read_s + cpu.read_seconds, cpu.decode_seconds,
                  decoders=dict(counts), gpu_seconds=gpu_seconds)
        b.ready, b.keep = ready, (decoded, out)
        return b""")
    else:
        g = sub(g, """            lane.stream.synchronize()  # ready for the engine's streams once handed over
""", """            _s = time.perf_counter()
            lane.stream.synchronize()  # ready for the engine's streams once handed over
            _add(after_resize=_s - waited, sync=time.perf_counter() - _s)
""")
        g = sub(g, """        return Batch([it.key for it in chunk], tensors, errors, read_s + cpu.read_seconds, cpu.decode_seconds,
                     decoders=dict(counts), gpu_seconds=gpu_seconds)""", """        _add(total=time.perf_counter() - _a, cpu=time.thread_time() - _c, batches=1)
        return Batch([it.key for it in chunk], tensors, errors, read_s + cpu.read_seconds, cpu.decode_seconds,
                     decoders=dict(counts), gpu_seconds=gpu_seconds)""")
    if prio:
        g = sub(g, "torch.cuda.Stream(self.device),", "torch.cuda.Stream(self.device, priority=-1),")
    (dst / "gpudecode.py").write_text(g)
    p = (dst / "pipeline.py").read_text()
    # consumer side: wait for an event-carrying batch before handing it on (C); time the main loop's waits
    p = sub(p, """            batch = finish()
""", """            _f = time.perf_counter()
            batch = finish()
            _r = getattr(batch, "ready", None)
            _g = time.perf_counter()
            if _r is not None:
                _r.synchronize()
                batch.keep = None
            from . import gpudecode as _gd
            _gd._add(main_finish=_g - _f, main_ready=time.perf_counter() - _g)
""")
    (dst / "pipeline.py").write_text(p)
    r = (dst / "runner.py").read_text()
    r = sub(r, """            idx, score = topk(next(iter(outputs.values())), job.top_k)""", """            _t = time.perf_counter()
            idx, score = topk(next(iter(outputs.values())), job.top_k)
            from . import gpudecode as _gd
            _gd._add(main_topk=time.perf_counter() - _t)""")
    (dst / "runner.py").write_text(r)

if "head" in sys.argv:
    make("A")
    make("B", prio=True)
    make("C", prio=True, nosync=True)
    print("ok")

def tree(name, prio=False, switch=0.0):
    dst = OUT / name / "batchscore"
    if dst.parent.exists():
        shutil.rmtree(dst.parent)
    shutil.copytree(ROOT / "batchscore", dst, ignore=shutil.ignore_patterns("__pycache__"))
    if switch:
        g = (dst / "gpudecode.py").read_text()
        line = "        self.torch, self.library = torch, library\n"
        (dst / "gpudecode.py").write_text(sub(g, line, line + f"        import sys; sys.setswitchinterval({switch})\n"))
    if prio:
        g = (dst / "gpudecode.py").read_text()
        (dst / "gpudecode.py").write_text(sub(g, "torch.cuda.Stream(self.device),",
                                              "torch.cuda.Stream(self.device, priority=-1),"))
    g = (dst / "gpudecode.py").read_text()  # the exp_one harness reads gpudecode._T
    (dst / "gpudecode.py").write_text(g + "\n_T = {}\n")

if "tree" in sys.argv:
    tree("N")
    tree("P", prio=True)
    tree("S", switch=0.001)

def patched(name, old, new, module="runner.py"):
    """Variant `name`: the working tree with one edit to batchscore/`module`."""
    tree(name)
    f = OUT / name / "batchscore" / module
    f.write_text(sub(f.read_text(), old, new))

if "stubs" in sys.argv:
    tree("N")
    patched("T", "            idx, score = topk(next(iter(outputs.values())), job.top_k)\n",
         "            _o = next(iter(outputs.values()))\n"
         "            idx, score = np.zeros((len(_o), job.top_k), np.int32), "
         "np.zeros((len(_o), job.top_k), np.float32)\n")
    patched("X", "    for outputs in engine.infer_iter(good_tensors()):\n",
         "    for outputs in ({\"logits\": np.zeros((len(t), 1000), np.float32)} for t in good_tensors()):\n")
    print("stubs ok")

if "dlpack" in sys.argv:  # at 052c827: N as it is; D wraps decoded images through DLPack; W warms a full batch
    tree("N")
    patched("D", "self.torch.as_tensor(image, device=self.device).permute(2, 0, 1)",
            "self.torch.from_dlpack(image.__dlpack__(stream=stream.cuda_stream)).permute(2, 0, 1)", "gpudecode.py")
    patched("W", """                raise RuntimeError(f"{lane.lib.label} decoded a 64×64 (200, 40, 60) JPEG to channel means {means}")
""", """                raise RuntimeError(f"{lane.lib.label} decoded a 64×64 (200, 40, 60) JPEG to channel means {means}")
            with self.torch.cuda.device(self.device), self.torch.cuda.stream(lane.stream):
                from .preprocess import Preprocess
                spec = Preprocess()
                images = lane.lib.decode([lane.lib.prepare(tiny_jpeg(500))] * 256, lane.stream)
                out = self.torch.empty((256, *spec.shape), device=self.device)
                resize_crop_normalise(out, {i: image for i, (image, _) in enumerate(images)}, spec)
                lane.stream.synchronize()
""", "gpudecode.py")
    print("dlpack ok")

def at_commit(name, commit, paths):
    """Variant `name`: the working tree with `paths` (under batchscore/) as they were at `commit`."""
    import subprocess
    tree(name)
    for path in paths:
        old = subprocess.run(["git", "show", f"{commit}:batchscore/{path}"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
        (OUT / name / "batchscore" / path).write_text(old + ("\n_T = {}\n" if path == "gpudecode.py" else ""))

if "topk" in sys.argv:  # N: 3e7a953 (top-k in the rank's loop, on the host); G: the working tree (top-k on the GPU)
    tree("G")
    at_commit("N", "3e7a953", ("runner.py", "engines/__init__.py", "engines/torch_backend.py"))
    print("topk ok")

if "overlap" in sys.argv:  # N: b840633 (decoder opened after the engine); O: the working tree (opened beside it, warmed
    tree("O")              # up on the first batch); Q: O with high-priority decoder streams
    tree("Q", prio=True)
    at_commit("N", "b840633", ("runner.py", "gpudecode.py", "enginecache.py", "engines/torch_backend.py"))
    print("overlap ok")

if "prefetch" in sys.argv:  # R: the working tree (two batches beyond the decoder's threads, since 49cccf2);
    tree("R")                 # O: R with one beyond, as before it
    patched("O", "return max(2, 2 * workers // batch_size + 1, gpu_threads + 2 if gpu_threads else 0)",
            "return max(2, 2 * workers // batch_size + 1, gpu_threads + 1)", "pipeline.py")
    print("prefetch ok")

if "reuse" in sys.argv:  # O: 2d96b84 (new output images every batch); R: the working tree (decoded into reused images)
    tree("R")
    at_commit("O", "2d96b84", ("gpudecode.py",))
    print("reuse ok")

if "fuse" in sys.argv:  # O: 49cccf2 (eager kernels: bias, add and ReLU after each convolution); F: the working tree
    tree("F")             # (cuDNN's fused convolution + bias [+ add] + ReLU)
    at_commit("O", "49cccf2", ("engines/torch_backend.py", "engines/__init__.py", "runner.py"))
    print("fuse ok")

GIL_PROBE = '''
_LAST = [0.0]  # when the decoder thread last finished a batch: the probe counts only while batches flow
def _gil_probe():  # how late a thread that sleeps 1 ms gets the interpreter lock back: the lock's queue
    lat = []
    while True:
        t = time.perf_counter()
        time.sleep(0.001)
        now = time.perf_counter()
        if now - _LAST[0] < 0.05:
            lat.append(now - t - 0.001)
        if len(lat) == 200:
            lat.sort()
            _add(gil_samples=200, gil_late_sum=sum(lat), gil_late_p50=lat[100], gil_late_p90=lat[180], gil_windows=1)
            lat.clear()
threading.Thread(target=_gil_probe, daemon=True).start()
'''


def timers(name):
    """Variant `name`: the working tree with timers in the decoder thread (its library call, wrapping, the resize,
    its CPU time) and an interpreter-lock latency probe, for decode only against end to end (exp_one.py)."""
    tree(name)
    f = OUT / name / "batchscore" / "gpudecode.py"
    g = f.read_text().replace("\n_T = {}\n", "")
    g = sub(g, "\nif TYPE_CHECKING:\n    import torch\n", "\nif TYPE_CHECKING:\n    import torch\n" + INSTR + GIL_PROBE)
    g = sub(g, """        into = self.reused.take(len(streams), stream) if self.reused is not None else None
""", """        _t = time.perf_counter()
        into = self.reused.take(len(streams), stream) if self.reused is not None else None
        _add(take=time.perf_counter() - _t)
""")
    g = sub(g, """            try:
                images = decoder.decode([streams[i] for i in pending], params=self.params,""", """            _t0, _c0 = time.perf_counter(), time.thread_time()
            try:
                images = decoder.decode([streams[i] for i in pending], params=self.params,""")
    g = sub(g, """                images = [None] * len(pending)
""", """                images = [None] * len(pending)
            _t1 = time.perf_counter()
            _add(lib_call=_t1 - _t0, lib_cpu=time.thread_time() - _c0, lib_images=len(pending))
""")
    g = sub(g, """            pending = [i for i in pending if out[i][0] is None]
        return out
""", """            pending = [i for i in pending if out[i][0] is None]
            _add(wrap=time.perf_counter() - _t1)
        return out
""")
    g = thread_timers(g)
    g = sub(g, """        return Batch([it.key for it in chunk], tensors, errors, read_s + cpu.read_seconds, cpu.decode_seconds,
                     decoders=dict(counts), gpu_seconds=gpu_seconds), queued""", """        _add(total=time.perf_counter() - _a, cpu=time.thread_time() - _c, batches=1, images=len(chunk))
        _LAST[0] = time.perf_counter()
        return Batch([it.key for it in chunk], tensors, errors, read_s + cpu.read_seconds, cpu.decode_seconds,
                     decoders=dict(counts), gpu_seconds=gpu_seconds), queued""")
    f.write_text(g)


if "timers" in sys.argv:  # I: the working tree with timers (`timers`)
    timers("I")
    print("timers ok")

if "views" in sys.argv:  # O: d299881 (each decoded image wrapped as a new tensor); V: the working tree (a reused image
    tree("V")              # keeps its tensor, ReusedImages.view); IV: V with timers
    at_commit("O", "d299881", ("gpudecode.py",))
    timers("IV")
    print("views ok")

if "readers" in sys.argv:  # O: the working tree (the workers read and check headers in the rank); P: 050d1cd (in read
    tree("O")                # processes of their own, readers.py; taken out again, docs/performance.md)
    at_commit("P", "050d1cd", ("gpudecode.py", "readers.py", "jpeg.py"))
    print("readers ok")

if "hwthreads" in sys.argv:  # O: the working tree (every step of nvImageCodec with the rank's cores - 1 CPU threads);
    tree("O")                  # H: O whose hardware step has 4 (probe_params.py: its call then costs the caller less)
    patched("H", """                    device_id=device.index, max_num_cpu_threads=max(1, min(threads, (os.cpu_count() or 2) - 1)),
""", """                    device_id=device.index, max_num_cpu_threads=min(4 if key == "gpu_hw" else 1 << 10,
                                                                    max(1, min(threads, (os.cpu_count() or 2) - 1))),
""", "gpudecode.py")
    print("hwthreads ok")

LET_GO = ("""        while pending:
            finish, _ = pending.popleft()
            batch = finish()
""", """        finish = _ = batch = None
        from . import gpudecode as _g
        while pending:
            _t, _c = time.perf_counter(), time.thread_time()
            finish = _ = None  # the batch before's read results (bytes, code streams), its queued images, its futures
            _t1, _c1 = time.perf_counter(), time.thread_time()
            batch = None  # the batch before itself (its tensor)
            _g._add(let_go_reads=_t1 - _t, let_go_reads_cpu=_c1 - _c, let_go_batch=time.perf_counter() - _t1,
                    let_go_batch_cpu=time.thread_time() - _c1, let_go_n=1)
            finish, _ = pending.popleft()
            batch = finish()
""")
MALLOPT = """
import ctypes as _ctypes
_libc = _ctypes.CDLL("libc.so.6")
_libc.mallopt(-1, 1 << 30), _libc.mallopt(-2, 64 << 20), _libc.mallopt(-3, 4 << 20)  # trim, top pad, mmap threshold
"""

if "letgo" in sys.argv:  # L: the working tree with timers (`timers`) and the loop's letting go of a batch timed;
    for name in ("L", "M"):  # M: L with glibc's malloc told not to give freed memory back (trim 1 GB, pad 64 MB)
        timers(name)
        f = OUT / name / "batchscore" / "pipeline.py"
        f.write_text(sub(f.read_text(), *LET_GO))
    f = OUT / "M" / "batchscore" / "gpudecode.py"
    f.write_text(sub(f.read_text(), "\nif TYPE_CHECKING:\n    import torch\n", "\nif TYPE_CHECKING:\n    import torch\n" + MALLOPT))
    print("letgo ok")

if "capi" in sys.argv:  # O: the working tree with the hardware step on nvImageCodec's Python API, as before the C
    patched("O", 'if os.environ.get(hwjpeg.OFF) != "0":', "if False:", module="gpudecode.py")  # API; main: the C API;
    tree("S", switch=0.0002)  # S: the C API and a 0.2 ms interpreter switch interval (5 ms by default)
    print("capi ok")

if "ahead" in sys.argv:  # P: the working tree with a third batch beyond the GPU decoder's threads (C API on)
    patched("P", "gpu_threads + 2 if gpu_threads else 0)", "gpu_threads + 3 if gpu_threads else 0)", module="pipeline.py")
    print("ahead ok")

if "hw4" in sys.argv:  # H: the working tree with the C API's hardware decoder on 4 CPU threads (cores - 1 by default)
    patched("H", "hwjpeg.HwJpeg(device.index, self.threads)", "hwjpeg.HwJpeg(device.index, min(4, self.threads))",
            module="gpudecode.py")
    print("hw4 ok")

PRELOAD = '''
_CACHE: dict[str, bytes] = {}
if os.environ.get("EXP_PRELOAD"):  # every file under it read into memory at import: reads without system calls
    for _d, _, _fs in os.walk(os.environ["EXP_PRELOAD"]):
        for _f in _fs:
            with open(os.path.join(_d, _f), "rb") as _h:
                _CACHE[os.path.join(_d, _f)] = _h.read()
'''

if "preload" in sys.argv:  # M: the working tree with files read from memory (EXP_PRELOAD) instead of the file system,
    # to see what the read worker's system calls (each lets go of the interpreter lock) cost end to end; Z: M without
    # gpu_route's header check
    for name in "MZ":
        patched(name, "\nclass Reader:\n", PRELOAD + "\n\nclass Reader:\n", module="sources.py")
        f = OUT / name / "batchscore" / "sources.py"
        f.write_text(sub(f.read_text(), '        if item.kind == "file":\n',
                         '        if item.kind == "file" and item.path in _CACHE:\n            return _CACHE[item.path]\n'
                         '        if item.kind == "file":\n'))
    f = OUT / "Z" / "batchscore" / "gpudecode.py"
    f.write_text(sub(f.read_text(), "if data is not None and not gpu_route(data, max_pixels):",
                     "if data is not None:"))
    print("preload ok")

if "pinned" in sys.argv:  # at a116526 (each batch's bytes copied to a page-locked buffer first, DeviceBuffers.on_host,
    # taken out again after): O = that tree reading them from Python's bytes (pageable memory), as before; main = a116526
    patched("O", "stream.cuda_stream,\n                                                             self.buffers.on_host)",
            "stream.cuda_stream)", module="gpudecode.py")
    print("pinned ok")

DECODE_CALL = """            offsets, runs, buffer, ok = decoder.decode_batch(data, lambda nbytes: self.buffers.take(nbytes, stream),
                                                             stream.cuda_stream)
        except RuntimeError:  # the whole call failed: the next step tries every image again
            return [None] * len(data)
"""
DECODE_STREAM = """            if not hasattr(self, "decode_stream"):
                self.decode_stream = self.torch.cuda.Stream(self.device)
            offsets, runs, buffer, ok = decoder.decode_batch(data, lambda nbytes: self.buffers.take(nbytes, stream),
                                                             self.decode_stream.cuda_stream)
            stream.wait_stream(self.decode_stream)
        except RuntimeError:  # the whole call failed: the next step tries every image again
            return [None] * len(data)
"""

if "base" in sys.argv:  # B: the working tree as it is, kept as the baseline before the working tree changes
    tree("B")

if "decodestream" in sys.argv:  # T: the working tree (at 75a9f3c) with the C API's decode calls on a stream of their
    # own, the lane's stream (the resize) waiting for it: py-spy (h200-pyspy-gil-c-api.json) found the decoder thread
    # in Turns.next_turn's event wait, and nvImageCodec may order its decode after the work already on the stream
    # it is given, which is the last batch's resize, slowed beside the engine.
    patched("T", DECODE_CALL, DECODE_STREAM, module="gpudecode.py")
    print("decodestream ok")

if "strided" in sys.argv:  # on the working tree with `batched` (each size's run of the C API's buffer passed to the
    # resize as one strided view, no torch.stack): U = it + decodestream's T. Run with B made at 5f79194 ("base")
    patched("U", DECODE_CALL, DECODE_STREAM, module="gpudecode.py")
    # the view to float: G converts it straight to contiguous float; L keeps its channels-last layout (the resize
    # runs on that), K makes it contiguous uint8 first (probe_strided.py times the kernels alone)
    line = "batched([decoded[i] for i in same]).to(torch.float32, memory_format=torch.contiguous_format)"
    patched("L", line, "batched([decoded[i] for i in same]).float()", module="gpudecode.py")
    patched("K", line, "batched([decoded[i] for i in same]).contiguous().float()", module="gpudecode.py")
    print("strided ok")

if "hybridprocs" in sys.argv:  # Y: the working tree (at 1049858) with hybrid's CPU share decoded in decode processes
    # (decodeprocs.py, worker_kind as for decode = cpu) instead of the workers' threads: hybrid lost to pure GPU decode
    # on the H100 because its Pillow threads took the interpreter lock from the decoder thread; processes do not.
    tree("Y")
    root = OUT / "Y" / "batchscore"
    r = (root / "runner.py").read_text()
    r = sub(r, 'kind = job.worker_kind if gpu is None else "thread"',
            'kind = job.worker_kind if gpu is None or gpu.tuner or gpu.share < 1.0 else "thread"')
    (root / "runner.py").write_text(r)
    p = (root / "pipeline.py").read_text()
    p = sub(p, "start_batch = gpu.start_batch if gpu is not None else functools.partial(cpu_batch, procs=procs)",
            "start_batch = functools.partial(gpu.start_batch if gpu is not None else cpu_batch, procs=procs)")
    (root / "pipeline.py").write_text(p)
    g = (root / "gpudecode.py").read_text()
    g = sub(g, """                    draft: bool = False) -> Started:
        \"\"\"Start a batch (pipeline.batches calls this)""", """                    draft: bool = False, procs=None) -> Started:
        \"\"\"Start a batch (pipeline.batches calls this)""")
    g = sub(g, "cpu_finish, cpu_futures = cpu_batch(chunk[k:], spec, executor, draft)",
            "cpu_finish, cpu_futures = cpu_batch(chunk[k:], spec, executor, draft, procs)")
    (root / "gpudecode.py").write_text(g)
    print("hybridprocs ok")
