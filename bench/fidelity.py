#!/usr/bin/python3
"""Benchmark: the cost model's predicted step time against the measured one on this machine.

First profiles this machine (`alpa profile`, threads and MPI backends) into two cluster files,
then trains a set of plans with `alpa train --cluster <profile> --json` and compares each
plan's prediction (the ILP's compute + communication for a mesh, the planner's pipeline
estimate for stages) with the measured median step time: data, tensor, ZeRO-style and
automatic plans on 2 devices, pipelines with GPipe and 1F1B, on the threads backend and on
2 MPI ranks. Prints a table, the median and worst absolute error.

Usage: /usr/bin/python3 bench/fidelity.py [--steps 4] [--record]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OPENBLAS_NUM_THREADS="1")
PIPE = {"micro_batches": 4, "pipeline": {"devices": 2, "layers": 2, "schedule": "SCHED"},
        "stages": [{"layers": [0, 0], "mesh": [1, 1]}, {"layers": [1, 1], "mesh": [1, 1]}]}


def run(cmd):
    out = subprocess.run(cmd, env=ENV, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpa", default=os.path.join(ROOT, "build/release/src/alpa"))
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="alpa-fidelity-")
    threads_cluster = os.path.join(tmp, "threads.json")
    mpi_cluster = os.path.join(tmp, "mpi.json")
    subprocess.run([a.alpa, "profile", "--out", threads_cluster], env=ENV, check=True,
                   capture_output=True)
    subprocess.run(["mpirun", "-np", "2", a.alpa, "profile", "--backend", "mpi", "--out",
                    mpi_cluster], env=ENV, check=True, capture_output=True)
    plans = {}
    for sched in ["1f1b", "gpipe"]:
        p = json.loads(json.dumps(PIPE).replace("SCHED", sched))
        plans[sched] = os.path.join(tmp, f"pipe-{sched}.json")
        with open(plans[sched], "w") as f:
            json.dump(p, f)
    gpt = ["--model", "gpt", "--size", "small"]
    mlp = ["--model", "mlp", "--size", "small", "--batch", "4096"]
    mpirun = ["mpirun", "-np", "2"]
    cases = [
        ("GPT-small, 1x2 data parallel", "threads", gpt + ["--mesh", "1x2", "--plan", "data-parallel"]),
        ("GPT-small, 1x2 tensor parallel", "threads", gpt + ["--mesh", "1x2", "--plan", "tensor-parallel"]),
        ("GPT-small, 1x2 ZeRO", "threads", gpt + ["--mesh", "1x2", "--plan", "zero"]),
        ("GPT-small, 1x2 ILP plan", "threads", gpt + ["--mesh", "1x2"]),
        ("GPT-small, 2 stages 1F1B, 4 micro-batches", "threads", gpt + ["--plan", plans["1f1b"]]),
        ("GPT-small, 2 stages GPipe, 4 micro-batches", "threads", gpt + ["--plan", plans["gpipe"]]),
        ("MLP-small (batch 4096), 1x2 ILP plan", "threads", mlp + ["--mesh", "1x2"]),
        ("MLP-small (batch 4096), 1x2 tensor parallel", "threads", mlp + ["--mesh", "1x2", "--plan", "tensor-parallel"]),
        ("GPT-small, 1x2 data parallel", "mpi", gpt + ["--plan", "data-parallel"]),
        ("GPT-small, 1x2 tensor parallel", "mpi", gpt + ["--plan", "tensor-parallel"]),
        ("GPT-small, 1x2 ILP plan", "mpi", gpt),
        ("GPT-small, 2 stages 1F1B, 4 micro-batches", "mpi", gpt + ["--plan", plans["1f1b"]]),
        ("MLP-small (batch 4096), 1x2 ILP plan", "mpi", mlp),
    ]
    rows, errors = [], []
    for name, backend, extra in cases:
        cluster = mpi_cluster if backend == "mpi" else threads_cluster
        cmd = [a.alpa, "train", "--steps", str(a.steps), "--json", "--cluster", cluster] + extra
        if backend == "mpi":
            cmd = mpirun + cmd + ["--backend", "mpi"]
        j = run(cmd)
        pred, meas = j["predicted_step_time_s"], j["step_time_s"]
        err = (pred - meas) / meas
        errors.append(abs(err))
        rows.append(f"| {name} | {backend} | {pred:.3f} | {meas:.3f} | {100 * err:+.0f}% |")
        print(rows[-1], file=sys.stderr)
    lines = ["| plan | backend | predicted s/step | measured s/step | error |", "|---|---|---|---|---|"]
    table = "\n".join(lines + rows)
    summary = (f"{len(errors)} plans: median |error| {100 * statistics.median(errors):.0f}%, "
               f"worst {100 * max(errors):.0f}%")
    print(table)
    print(summary)
    if a.record:
        with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
            f.write(f"\n## Cost-model fidelity on this machine (profiled) — "
                    f"{datetime.date.today().isoformat()}\n\n")
            f.write(f"- machine: {platform.processor() or 'x86_64'} 2-core VM; clusters from "
                    f"`alpa profile` (threads) and `mpirun -np 2 alpa profile --backend mpi`\n")
            f.write(f"- command: `/usr/bin/python3 bench/fidelity.py --steps {a.steps} --record`; "
                    f"measured = median step time after the first; predicted = the plan's "
                    f"cost-model step time\n\n")
            f.write(table + "\n\n" + summary + "\n")


if __name__ == "__main__":
    main()
