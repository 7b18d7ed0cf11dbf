#!/usr/bin/python3
"""Benchmark: inter-operator planning time, split by phase, for the paper's GPT configurations.

Runs `alpa plan --model gpt --size S --cluster p3.16xlarge --gpus N --batch 1024 --json` for
the GPT rows of the Alpa paper's Table 4 (350M on 1 GPU ... 39B on 64 GPUs; global batch
1024, fp16, AdamW) and prints one row per model: planning time by phase (layer clustering,
stage costs, stage DP, total), how the candidates were costed (intra-op solves, reused,
extrapolated), the plan (stages, micro-batches) and its prediction (step time, samples/s,
aggregate PFLOPS of the cluster by the cost model, peak memory per device).

Without --micro-batches the planner also searches the micro-batch count; with it, each model
is planned for that count. A model that fits no plan (the cost model has no rematerialisation,
which Alpa's benchmarks turn on) is reported with the smallest memory per device that works.

Usage: /usr/bin/python3 bench/pipeline_planning.py [--micro-batches B] [--sizes 350m 1.3b]
                                                    [--record]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

from benchlib import cpu_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER = [("350m", 1), ("760m", 2), ("1.3b", 4), ("2.6b", 8), ("6.7b", 16), ("15b", 32),
         ("39b", 64)]


def plan(alpa, size, gpus, micro_batches, extra):
    cmd = [alpa, "plan", "--model", "gpt", "--size", size, "--cluster", "p3.16xlarge",
           "--gpus", str(gpus), "--batch", "1024", "--json"] + extra
    if micro_batches:
        cmd += ["--micro-batches", str(micro_batches)]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    lines = p.stdout.strip().splitlines()
    j = json.loads(lines[-1]) if lines else {"error": p.stderr.strip()}
    return j, wall, " ".join(cmd[1:])




def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpa", default=os.path.join(ROOT, "build/release/src/alpa"))
    ap.add_argument("--micro-batches", type=int, default=0)
    ap.add_argument("--sizes", nargs="*", default=[s for s, _ in PAPER])
    ap.add_argument("--extra", action="append", default=[],
                    help="one more flag for alpa plan (repeat: --extra=--memory-budget --extra=24)")
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    head = ("| model | GPUs | layers | micro-batches | stages (submesh: layers) | clustering s | "
            "stage costs s | DP s | exact check s | total s | solves / reused / extrapolated | "
            "predicted step s | samples/s | PFLOPS | peak memory GB |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for size, gpus in PAPER:
        if size not in a.sizes:
            continue
        j, wall, cmd = plan(a.alpa, size, gpus, a.micro_batches, a.extra)
        print(f"{cmd}: {wall:.1f} s", file=sys.stderr)
        if "error" in j:
            rows.append(f"| GPT-{size} | {gpus} | | | no plan: {j['error']} | | | | | "
                        f"{wall:.1f} | | | | | |")
            continue
        pl = j["planning"]
        stages = ", ".join(f"{s['submesh']}: {s['layers'][0]}-{s['layers'][1]}"
                           for s in j["stages"])
        pflops = j["tflops_per_device"] * gpus / 1000
        rows.append(
            f"| GPT-{size} | {gpus} | {j['layers']} | {j['micro_batches']} | {stages} | "
            f"{pl['clustering_s']:.3f} | {pl['stage_costs_s']:.2f} | {pl['dp_s']:.3f} | "
            f"{pl.get('verify_s', 0):.2f} | "
            f"{j['planning_time_s']:.2f} | {pl['intra_solves']} / {pl['cache_hits']} / "
            f"{pl.get('extrapolated', 0)} | {j['predicted_step_time_s']:.3f} | "
            f"{j['samples_per_s']:.1f} | {pflops:.3f} | {j['peak_memory_bytes'] / 1e9:.2f} |")
    table = "\n".join(rows)
    print(table)
    if a.record:
        with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
            f.write(f"\n## Pipeline planning time for the paper's GPT configurations, "
                    f"p3.16xlarge — {datetime.date.today().isoformat()}\n\n")
            f.write(f"- machine: {cpu_name()}, {os.cpu_count()} cores\n")
            cmd = "/usr/bin/python3 bench/pipeline_planning.py" + (
                f" --micro-batches {a.micro_batches}" if a.micro_batches else "")
            if sorted(a.sizes) != sorted(s for s, _ in PAPER):
                cmd += " --sizes " + " ".join(a.sizes)
            if a.extra:
                cmd += " --extra=" + " ".join(a.extra).replace(" ", " --extra=")
            cmd += " --record"
            f.write(f"- command: `{cmd}`\n")
            f.write("- each row: `alpa plan --model gpt --size S --cluster p3.16xlarge --gpus N "
                    "--batch 1024 --json`; times are the planner's own phase timers\n\n")
            f.write(table + "\n")


if __name__ == "__main__":
    main()
