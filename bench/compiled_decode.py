#!/usr/bin/python3
"""Compiled inference (alpa generate --compiled: prefill and decode steps through the compile
driver, run by the ProgramRunner) against the serving engine's kernels, side by side.

Writes a random GPT-2 checkpoint (--size; 124m: GPT-2-124M's shapes, stored f16), then runs,
interleaved and --repeats times each, one greedy generation per configuration below from a
--prompt-token prompt (batch 1):
  engine              alpa generate                 (serve/'s kernels, one device)
  engine 1x2          alpa generate --mesh 1x2      (hand-split tensor parallelism, 2 threads)
  compiled            alpa generate --compiled      (one device)
  compiled 1x2        alpa generate --compiled --mesh 1x2   (the ILP's layouts, 2 threads)
Each configuration runs twice per repeat: to the first token (--max-tokens 1: prefill) and to
1 + --decode tokens; decode tokens/s = decode / (t(1 + decode) - t(1)). Generation time only:
loading and compiling are reported apart (the load column: loading for the engine, compiling
and loading for compiled). Medians over the repeats, ratios against the engine.

Usage: bench/compiled_decode.py [--build build/release] [--size 124m] [--prompt 128]
         [--decode 32] [--repeats 3] [--threads 2]"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_name  # noqa: E402
from serve_load import write_model  # noqa: E402

CONFIGS = [("engine", []), ("engine 1x2", ["--mesh", "1x2"]), ("compiled", ["--compiled"]),
           ("compiled 1x2", ["--compiled", "--mesh", "1x2"])]


def run(alpa, model, ids, tokens, flags, threads, chunk, context):
    extra = ["--chunk", str(chunk), "--context", str(context)] if "--compiled" in flags else []
    cmd = [alpa, "generate", "--model", model, "--prompt-ids", ",".join(map(str, ids)),
           "--max-tokens", str(tokens), "--temperature", "0", "--ignore-eos", "--json",
           "--threads", str(threads)] + flags + extra
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ,
                                                                     OPENBLAS_NUM_THREADS="1"))
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} ... {' '.join(flags)}: {r.stderr[-600:]}")
    j = json.loads(r.stdout)
    return j["timing"]["generate_seconds"], j["timing"]["load_seconds"], j["tokens"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--size", default="124m")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="per process (engine) / in all")
    a = ap.parse_args()
    alpa = os.path.join(a.build, "src", "alpa")
    model = f"/tmp/alpa_compiled_bench_{a.size}"
    write_model(model, a.size)
    rng = random.Random(1)
    ids = [rng.randrange(50000) for _ in range(a.prompt)]
    context = a.prompt + a.decode + 1
    times = {name: {"first": [], "all": [], "load": []} for name, _ in CONFIGS}
    outputs = {}
    for rep in range(a.repeats):
        for name, flags in CONFIGS:
            # Threads in all: one device takes every one; a 1x2 mesh one per device.
            threads = a.threads if "--mesh" not in flags or "--compiled" not in flags else max(
                1, a.threads // 2)
            t1, load, _ = run(alpa, model, ids, 1, flags, threads, a.prompt, context)
            tn, _, toks = run(alpa, model, ids, 1 + a.decode, flags, threads, a.prompt, context)
            times[name]["first"].append(t1)
            times[name]["all"].append(tn)
            times[name]["load"].append(load)
            outputs[name] = toks
            print(json.dumps({"config": name, "repeat": rep, "first_s": t1, "all_s": tn,
                              "load_s": load}), flush=True)
    same = all(t == outputs["engine"] for t in outputs.values())
    print(f"\n{a.size}, prompt {a.prompt}, {a.decode} decoded tokens, batch 1, {a.threads} "
          f"threads, {cpu_name()}; medians of {a.repeats}; every configuration's tokens "
          f"{'identical' if same else 'DIFFER'}\n")
    print("| configuration | load s | prefill tok/s | decode tok/s | prefill vs engine | "
          "decode vs engine |")
    print("|---|---|---|---|---|---|")
    base = None
    for name, _ in CONFIGS:
        first = statistics.median(times[name]["first"])
        decode = statistics.median(
            [(b - f) for f, b in zip(times[name]["first"], times[name]["all"])])
        pre, dec = a.prompt / first, a.decode / decode
        if base is None:
            base = (pre, dec)
        print(f"| {name} | {statistics.median(times[name]['load']):.2f} | {pre:.0f} | {dec:.1f} "
              f"| {pre / base[0]:.2f}x | {dec / base[1]:.2f}x |")
    if not same:
        sys.exit("the configurations generated different tokens")


if __name__ == "__main__":
    main()
