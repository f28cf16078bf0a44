"""Summarise a py-spy `record --gil --threads --format raw` profile of `batchscore score`: per thread, the samples
that held the interpreter lock while the rank scored (the loop's samples inside `scored`/`batches`, and every sample
of the decoder and read threads), and the frames that held it most (innermost batchscore frame, leaf frame).

    python benchmarks/gpu/ab/gil_profile.py PROFILE.txt [TOP] > summary.json
"""
import json, sys
from collections import Counter

threads, places = Counter(), Counter()
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    if not stack:
        continue
    frames = stack.split(";")
    thread = frames[0].split(": ")[-1]
    if thread == "MainThread" and not any("scored (" in f or "batches (" in f for f in frames):
        continue  # start-up, the merge: not scoring
    if not (thread == "MainThread" or thread.startswith(("decode_", "gpu-decode"))):
        continue  # the decoder's opening thread: start-up
    ours = [f for f in frames if "batchscore/" in f]
    threads[thread] += int(count)
    places[f"{thread} | {ours[-1] if ours else '-'} | {frames[-1]}"] += int(count)
print(json.dumps({"threads": threads, "top": places.most_common(int(sys.argv[2]) if len(sys.argv) > 2 else 40)},
                 indent=1))
