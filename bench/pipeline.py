#!/usr/bin/python3
"""Benchmark: pipeline-parallel GPT training on 2 virtual devices against one device.

Model: the training-step benchmark's GPT (`alpa train --model gpt --size small`: 4 layers,
hidden 512, 8 heads, seq 256, batch 8, vocab 8192, fp32, AdamW). The single device runs with
2 threads; the pipeline runs 2 virtual devices (threads) of 1 thread each, so both use the
machine's 2 cores. Pipelines: two stages of one device each (a hand-written plan file: the
model's layers split in two, 1F1B and GPipe, 4 micro-batches), and the planner's own choice
(`--pipeline auto`, micro-batches searched). Runs alternate, --reps times; the table gives
median step times and the median of the per-pair ratios (pipeline / one device).

Usage: /usr/bin/python3 bench/pipeline.py [--reps 3] [--record]
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(alpa, extra):
    cmd = [alpa, "train", "--model", "gpt", "--size", "small", "--steps", "5", "--json"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    j = json.loads(out.strip().splitlines()[-1])
    stages = len(j.get("pipeline", {}).get("stages", [])) or 1
    return j["step_time_s"], j["micro_batches"], stages, j["losses"][-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpa", default=os.path.join(ROOT, "build/release/src/alpa"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    plans = {}
    tmp = tempfile.mkdtemp()
    for schedule in ("1f1b", "gpipe"):
        path = os.path.join(tmp, f"two_stages_{schedule}.json")
        with open(path, "w") as f:
            json.dump({"micro_batches": 4,
                       "pipeline": {"devices": 2, "layers": 2, "schedule": schedule},
                       "stages": [{"layers": [0, 0], "mesh": [1, 1]},
                                  {"layers": [1, 1], "mesh": [1, 1]}]}, f)
        plans[schedule] = path
    configs = [("one device, 2 threads", ["--threads", "2"]),
               ("one device, 2 threads, 4 micro-batches", ["--threads", "2", "--micro-batches", "4"]),
               ("2 stages x 1 device, 1F1B, 4 micro-batches", ["--plan", plans["1f1b"]]),
               ("2 stages x 1 device, GPipe, 4 micro-batches", ["--plan", plans["gpipe"]]),
               ("--devices 2 --pipeline auto", ["--devices", "2", "--pipeline", "auto"])]
    times = {name: [] for name, _ in configs}
    info = {}
    for rep in range(a.reps):
        for name, extra in configs:
            t, mb, stages, loss = run(a.alpa, extra)
            times[name].append(t)
            info[name] = (mb, stages, loss)
            print(f"rep {rep + 1}: {name}: {t:.3f} s", file=sys.stderr)
    base = configs[0][0]
    lines = ["| configuration | stages | micro-batches | s/step (median) | "
             "vs one device (median of pairs) | final loss |",
             "|---|---|---|---|---|---|"]
    for name, _ in configs:
        ratios = [t / b for t, b in zip(times[name], times[base])]
        mb, stages, loss = info[name]
        lines.append(f"| {name} | {stages} | {mb} | {statistics.median(times[name]):.3f} | "
                     f"{statistics.median(ratios):.2f}x time | {loss:.5f} |")
    table = "\n".join(lines)
    print(table)
    if a.record:
        with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
            f.write(f"\n## GPT-small pipeline on 2 virtual devices vs one device — "
                    f"{datetime.date.today().isoformat()}\n\n")
            f.write(f"- machine: 2-core VM (see above); command: `/usr/bin/python3 "
                    f"bench/pipeline.py --reps {a.reps} --record` ({a.reps} interleaved "
                    f"repetitions)\n\n")
            f.write(table + "\n")


if __name__ == "__main__":
    main()
