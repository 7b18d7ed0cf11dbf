#!/usr/bin/python3
"""Benchmark: a GPT training step data-parallel on 2 virtual devices against one device.

Model: the training-step benchmark's GPT (`alpa train --model gpt --size small`: 4 layers,
hidden 512, 8 heads, seq 256, batch 8, vocab 8192, fp32, AdamW). The single device runs with
2 threads; the mesh runs 2 virtual devices (threads) of 1 thread each, so both use the
machine's 2 cores. Runs alternate, --reps times; the table gives median step times and the
median of the per-pair ratios (mesh / one device), for the data-parallel and the ILP plans.

Usage: /usr/bin/python3 bench/data_parallel.py [--reps 3] [--record]
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def step_time(alpa, extra):
    cmd = [alpa, "train", "--model", "gpt", "--size", "small", "--steps", "5", "--json"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    j = json.loads(out.strip().splitlines()[-1])
    return j["step_time_s"], j.get("collectives", 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpa", default=os.path.join(ROOT, "build/release/src/alpa"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    configs = [("one device, 2 threads", ["--threads", "2"]),
               ("1x2 mesh, data-parallel", ["--mesh", "1x2", "--plan", "data-parallel"]),
               ("1x2 mesh, ILP plan", ["--mesh", "1x2", "--plan", "auto"])]
    times = {name: [] for name, _ in configs}
    coll = {}
    for rep in range(a.reps):
        for name, extra in configs:
            t, c = step_time(a.alpa, extra)
            times[name].append(t)
            coll[name] = c
            print(f"rep {rep + 1}: {name}: {t:.3f} s", file=sys.stderr)
    base = configs[0][0]
    lines = ["| configuration | s/step (median) | vs one device (median of pairs) | collectives/step |",
             "|---|---|---|---|"]
    for name, _ in configs:
        ratios = [t / b for t, b in zip(times[name], times[base])]
        lines.append(f"| {name} | {statistics.median(times[name]):.3f} | "
                     f"{statistics.median(ratios):.2f}x time | {coll[name]} |")
    table = "\n".join(lines)
    print(table)
    if a.record:
        with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
            f.write(f"\n## GPT-small data-parallel on 2 virtual devices vs one device — "
                    f"{datetime.date.today().isoformat()}\n\n")
            f.write(f"- machine: 2-core VM (see above); command: `/usr/bin/python3 bench/data_parallel.py "
                    f"{' '.join(sys.argv[1:])}` ({a.reps} interleaved repetitions)\n\n")
            f.write(table + "\n")


if __name__ == "__main__":
    main()
