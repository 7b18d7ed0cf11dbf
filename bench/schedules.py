#!/usr/bin/python3
"""Benchmark: pipeline schedules (GPipe, 1F1B, interleaved 1F1B) on fixed stage splits.

Simulated: GPT-1.3B (24 blocks, hidden 2048, seq 1024, f16, AdamW) on one p3.16xlarge
(8 x V100), the model's 24 layers cut by a hand-written plan file into S meshes of equal
layer ranges (4 meshes of 1x2 devices, and 8 meshes of 1 device), B micro-batches; each
schedule runs the same meshes: GPipe and 1F1B one stage per mesh, interleaved 1F1B v stages
per mesh (the plan's stages re-cut by `--schedule interleaved --virtual-stages v`). The batch
is small (16: 2 samples per micro-batch at B = 8) so that the 1F1B stash fits in 16 GB.
Columns: simulated step, bubble fraction (idle device time), peak memory per device, and the
ideal bubble share of the step, (S - 1) / v / (B + (S - 1) / v).

Measured: GPT-small (`--size small`) on 2 virtual devices (threads of this machine, 1 each),
2 meshes of one device, 4 micro-batches, 1F1B against interleaved with 2 virtual stages;
runs alternate, --reps times, medians. Every run's final loss is printed: they must agree.

Usage: /usr/bin/python3 bench/schedules.py [--reps 3] [--record] [--skip-measured]
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEDULES = [("gpipe", None), ("1f1b", None), ("interleaved", 2), ("interleaved", 4)]


def plan_file(tmp, name, meshes, layers, micro_batches):
    path = os.path.join(tmp, name)
    per = layers // len(meshes)
    devices = sum(m[0] * m[1] for m in meshes)
    with open(path, "w") as f:
        json.dump({"micro_batches": micro_batches,
                   "pipeline": {"devices": devices, "layers": layers, "schedule": "1f1b"},
                   "stages": [{"layers": [i * per, (i + 1) * per - 1], "mesh": list(m)}
                              for i, m in enumerate(meshes)]}, f)
    return path


def schedule_flags(schedule, v):
    return ["--schedule", schedule] + (["--virtual-stages", str(v)] if v else [])


def simulated(alpa, tmp):
    rows = []
    for split, meshes in (("4 meshes x 1x2", [(1, 2)] * 4), ("8 meshes x 1", [(1, 1)] * 8)):
        B = 8
        plan = plan_file(tmp, f"gpt13_{len(meshes)}.json", meshes, 24, B)
        S = len(meshes)
        for schedule, v in SCHEDULES:
            cmd = [alpa, "simulate", "--model", "gpt", "--size", "1.3b", "--batch", "16",
                   "--cluster", "p3.16xlarge", "--plan", plan, "--json"] + \
                schedule_flags(schedule, v)
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
            j = json.loads(out.strip().splitlines()[-1])
            name = schedule + (f" v={v}" if v else "")
            if "error" in j:
                rows.append(f"| {split} | {B} | {name} | - | - | - | - | {j['error']} |")
                continue
            ideal = (S - 1) / (v or 1) / (B + (S - 1) / (v or 1))
            rows.append(f"| {split} | {B} | {name} | {j['step_time_s']:.3f} | "
                        f"{100 * j['bubble_fraction']:.1f}% | {100 * ideal:.1f}% | "
                        f"{j['peak_memory_bytes'] / 1e9:.1f} | "
                        f"{'yes' if j['fits_memory'] else 'no'} |")
            print(rows[-1], file=sys.stderr)
    head = ["| split | micro-batches | schedule | simulated s/step | bubble | ideal bubble | "
            "peak GB/device | fits 16 GB |", "|---|---|---|---|---|---|---|---|"]
    return "\n".join(head + rows)


def measured(alpa, tmp, reps):
    plan = plan_file(tmp, "small_2.json", [(1, 1), (1, 1)], 4, 4)
    configs = [("1f1b", None), ("interleaved", 2)]
    times = {c: [] for c in configs}
    losses = {}
    for rep in range(reps):
        for schedule, v in configs:
            cmd = [alpa, "train", "--model", "gpt", "--size", "small", "--steps", "5",
                   "--plan", plan, "--json"] + schedule_flags(schedule, v)
            j = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                          text=True).stdout.strip().splitlines()[-1])
            times[(schedule, v)].append(j["step_time_s"])
            losses[(schedule, v)] = j["losses"][-1]
            print(f"rep {rep + 1}: {schedule} {v}: {j['step_time_s']:.3f} s", file=sys.stderr)
    base = times[configs[0]]
    lines = ["| schedule | s/step (median) | vs 1F1B (median of pairs) | final loss |",
             "|---|---|---|---|"]
    for c in configs:
        ratios = [t / b for t, b in zip(times[c], base)]
        name = c[0] + (f" v={c[1]}" if c[1] else "")
        lines.append(f"| {name} | {statistics.median(times[c]):.3f} | "
                     f"{statistics.median(ratios):.2f}x time | {losses[c]:.5f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpa", default=os.path.join(ROOT, "build/release/src/alpa"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--skip-measured", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    sim = simulated(a.alpa, tmp)
    print(sim)
    meas = None
    if not a.skip_measured:
        meas = measured(a.alpa, tmp, a.reps)
        print(meas)
    if a.record:
        with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
            f.write(f"\n## Pipeline schedules: GPipe, 1F1B and interleaved 1F1B on fixed stage "
                    f"splits — {datetime.date.today().isoformat()}\n\n")
            f.write(f"- machine: {benchlib.cpu_name()}, {os.cpu_count()} cores; command: "
                    f"`/usr/bin/python3 bench/schedules.py --reps {a.reps} --record`\n")
            f.write("- simulated: GPT-1.3B, batch 16 (seq 1024), on p3.16xlarge's 8 V100s, "
                    "the 24 layers split evenly over the meshes by a plan file; interleaved "
                    "re-cuts each mesh's share into v stages\n\n")
            f.write(sim + "\n")
            if meas:
                f.write("\nMeasured: GPT-small on 2 virtual devices (threads, 1 each), 2 "
                        "meshes of one device, 4 micro-batches, 5 steps:\n\n")
                f.write(meas + "\n")


if __name__ == "__main__":
    main()
