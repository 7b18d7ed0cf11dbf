#!/usr/bin/python3
"""Benchmark: the runtime's measured peak memory per device against the memory model.

For small configurations that run on this CPU in seconds (GPT-tiny/small on one device, a 2x2
mesh, 2- and 4-stage pipelines under 1F1B and GPipe (interleaved: tests/pipeline/memory_fidelity_test), with and without full
recomputation, MoE-tiny, MLP-tiny), runs `alpa train --steps 2 --json` and prints, per
device, the peak the simulator predicts for the compiled program (cost/memory.h: weights and
optimizer state, per-step values, the stash of the micro-batches in flight, the running task's
working memory) beside what the runtime measured in the same parts during the last step
(src/alpa/runtime/program_runner.h, DeviceStats::peak_*), and their ratio. Both count the
peak at the start of a task run: owned + store + that task's intermediates. Also printed: the
runtime's store peak plus task peak (two maxima that need not coincide: an upper bound) and
the process's maximum RSS (whole process: binary, planner, data; for context only).

Pipelines use plan files (equal layer ranges per stage), so stage counts are fixed.

Usage: /usr/bin/python3 bench/memory_fidelity.py [--record] [--only NAME]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GPT_TINY = ["--model", "gpt", "--size", "tiny"]


def plan_file(tmp, name, meshes, layers, micro_batches, virtual_stages=1):
    """Equal layer ranges, stage c on the mesh of c mod len(meshes)."""
    path = os.path.join(tmp, name)
    stages = len(meshes) * virtual_stages
    per = layers // stages
    devices = sum(m[0] * m[1] for m in meshes)
    schedule = "interleaved" if virtual_stages > 1 else "1f1b"
    with open(path, "w") as f:
        json.dump({"micro_batches": micro_batches,
                   "pipeline": {"devices": devices, "layers": layers, "schedule": schedule},
                   "stages": [{"layers": [c * per, (c + 1) * per - 1],
                               "mesh": list(meshes[c % len(meshes)])}
                              for c in range(stages)]}, f)
    return path


def configs(tmp):
    """(name, flags) of each configuration."""
    def pipe(name, model, meshes, layers, mb, extra=(), v=1):
        plan = plan_file(tmp, name + ".json", meshes, layers, mb, v)
        devices = sum(m[0] * m[1] for m in meshes)
        return (name, model + ["--devices", str(devices), "--plan", plan] + list(extra))

    gpt8 = GPT_TINY + ["--layers", "8"]
    return [
        ("gpt-tiny 1 device", GPT_TINY),
        ("gpt-small 1 device", ["--model", "gpt", "--size", "small"]),
        ("gpt-tiny 2x2 mesh (auto)", GPT_TINY + ["--mesh", "2x2"]),
        ("gpt-tiny 2x2 mesh (2d)", GPT_TINY + ["--mesh", "2x2", "--plan", "2d"]),
        pipe("gpt-tiny 2 stages 1f1b mb4", gpt8, [(1, 1)] * 2, 8, 4),
        pipe("gpt-tiny 2 stages gpipe mb4", gpt8, [(1, 1)] * 2, 8, 4, ["--schedule", "gpipe"]),
        pipe("gpt-tiny 2 stages 1f1b mb4 remat", gpt8, [(1, 1)] * 2, 8, 4, ["--remat", "full"]),
        pipe("gpt-tiny 4 stages 1f1b mb8", gpt8, [(1, 1)] * 4, 8, 8),
        pipe("gpt-tiny 4 stages gpipe mb8", gpt8, [(1, 1)] * 4, 8, 8, ["--schedule", "gpipe"]),
        pipe("gpt-tiny 2 stages of 1x2 1f1b mb4", gpt8, [(1, 2)] * 2, 8, 4),
        pipe("gpt-small 2 stages 1f1b mb4", ["--model", "gpt", "--size", "small"],
             [(1, 1)] * 2, 4, 4),
        pipe("moe-tiny 2 stages 1f1b mb4", ["--model", "moe", "--size", "tiny"],
             [(1, 1)] * 2, 2, 4),
        ("mlp-tiny 1x2 mesh", ["--model", "mlp", "--size", "tiny", "--mesh", "1x2"]),
    ]


def run(alpa, flags):
    """The report of `alpa train` and the process's maximum RSS in bytes."""
    cmd = [alpa, "train", "--steps", "2", "--threads", "1", "--json"] + flags
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.read()}")
        return json.loads(out.read().strip().splitlines()[-1]), usage.ru_maxrss * 1024, cmd


def kb(x):
    return f"{x / 1024:.1f}"


def parts(p):
    return (f"{kb(p['weights'])} + {kb(p['per_step'])} + {p['in_flight']} mb {kb(p['stash'])}"
            f" + {kb(p['working'])}")


def rows_of(name, report, rss):
    rows = []
    for m in report["memory"]:
        pred, meas = m.get("predicted"), m["measured"]
        if not pred:
            continue
        upper = meas["peak_store_bytes"] + meas["peak_task_bytes"] + meas["weights"]
        rows.append({"config": name, "device": m["device"], "stage": m["stage"],
                     "predicted": pred, "measured": meas,
                     "ratio": meas["peak_bytes"] / pred["peak_bytes"],
                     "upper": upper, "rss": rss})
    return rows


def table(rows):
    lines = ["| configuration | dev (stage) | predicted KB: weights + per-step + in flight x stash"
             " + working | predicted KB | measured KB, same parts | measured KB |"
             " measured / predicted | store peak + task peak + weights KB | process max RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['device']} ({r['stage']}) | {parts(r['predicted'])} |"
                     f" {kb(r['predicted']['peak_bytes'])} | {parts(r['measured'])} |"
                     f" {kb(r['measured']['peak_bytes'])} | {r['ratio']:.3f} |"
                     f" {kb(r['upper'])} | {r['rss'] / 2**20:.0f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpa", default=os.path.join(ROOT, "build/release/src/alpa"))
    ap.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    ap.add_argument("--only", default="", help="run the configurations whose name has this")
    args = ap.parse_args()
    rows, cmds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in configs(tmp):
            if args.only and args.only not in name:
                continue
            report, rss, cmd = run(args.alpa, flags)
            cmds.append(" ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c
                                 for c in cmd))
            got = rows_of(name, report, rss)
            rows += got
            worst = max(abs(r["ratio"] - 1) for r in got)
            print(f"{name}: {len(got)} devices, worst |measured/predicted - 1| = {worst:.3f}",
                  file=sys.stderr)
    text = table(rows)
    print(text)
    if args.record:
        date = datetime.date.today().isoformat()
        with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
            f.write(f"\n## Runtime's measured peak memory against the memory model - {date}\n\n"
                    f"- machine: {benchlib.cpu_name()}\n"
                    f"- command: `/usr/bin/python3 bench/memory_fidelity.py --record`\n\n"
                    f"{text}\n")


if __name__ == "__main__":
    main()
