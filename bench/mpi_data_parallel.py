#!/usr/bin/python3
"""Benchmark: GPT-small data-parallel on 2 MPI ranks against PyTorch DDP (gloo).

Model: the training-step benchmark's GPT (`alpa train --model gpt --size small`: 4 layers,
hidden 512, 8 heads, seq 256, vocab 8192, fp32, AdamW), global batch 8. alpa-cpp runs
`mpirun -np 2 alpa train --backend mpi` (2 processes x 1 thread; the ILP's plan on the 1x2
mesh, and the plain data-parallel plan); PyTorch runs bench/torch_ddp_step.py (DDP, gloo,
2 processes x 1 thread, OpenBLAS pinned to 1 thread with its SkylakeX kernels). For context,
alpa-cpp on one process: one device with batch 4 (the per-rank compute with no
communication) and the 1x2 mesh of the threads backend. Runs alternate, --reps times; the
table gives median step times and the median of the per-pair ratios against DDP.

Usage: /usr/bin/python3 bench/mpi_data_parallel.py [--reps 3] [--record]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OPENBLAS_NUM_THREADS="1")


def last_json(cmd):
    out = subprocess.run(cmd, env=ENV, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpa", default=os.path.join(ROOT, "build/release/src/alpa"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    train = [a.alpa, "train", "--model", "gpt", "--size", "small", "--steps", str(a.steps), "--json"]
    configs = [
        ("PyTorch DDP (gloo), 2 processes x 1 thread",
         lambda: last_json(["/usr/bin/python3", os.path.join(ROOT, "bench/torch_ddp_step.py"),
                            "--procs", "2", "--threads", "1", "--steps", str(a.steps - 1)])["median_s"]),
        ("alpa-cpp MPI, 2 ranks x 1 thread, ILP plan (1x2)",
         lambda: last_json(["mpirun", "-np", "2"] + train + ["--backend", "mpi"])["step_time_s"]),
        ("alpa-cpp MPI, 2 ranks x 1 thread, data-parallel plan",
         lambda: last_json(["mpirun", "-np", "2"] + train +
                           ["--backend", "mpi", "--plan", "data-parallel"])["step_time_s"]),
        ("alpa-cpp threads, 1x2 mesh (ILP plan)",
         lambda: last_json(train + ["--mesh", "1x2"])["step_time_s"]),
        ("alpa-cpp one device, 1 thread, batch 4 (per-rank compute)",
         lambda: last_json(train + ["--threads", "1", "--batch", "4"])["step_time_s"]),
    ]
    times = {name: [] for name, _ in configs}
    for rep in range(a.reps):
        for name, fn in configs:
            t = fn()
            times[name].append(t)
            print(f"rep {rep + 1}: {name}: {t:.3f} s", file=sys.stderr)
    base = configs[0][0]
    lines = ["| configuration | s/step (median) | speedup over DDP (median of pairs) |",
             "|---|---|---|"]
    for name, _ in configs:
        ratios = [b / t for t, b in zip(times[name], times[base])]
        lines.append(f"| {name} | {statistics.median(times[name]):.3f} | "
                     f"{statistics.median(ratios):.2f}x |")
    table = "\n".join(lines)
    print(table)
    if a.record:
        with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
            f.write(f"\n## GPT-small data-parallel on 2 MPI ranks vs PyTorch DDP (gloo) — "
                    f"{datetime.date.today().isoformat()}\n\n")
            f.write(f"- machine: {platform.processor() or 'x86_64'} 2-core VM, Open MPI 4.1.4, "
                    f"PyTorch {last_json(['/usr/bin/python3', '-c', 'import json,torch; print(json.dumps(torch.__version__))'])}\n")
            f.write(f"- command: `/usr/bin/python3 bench/mpi_data_parallel.py --reps {a.reps} "
                    f"--record` ({a.reps} interleaved repetitions; step times are medians after "
                    f"the first step)\n\n")
            f.write(table + "\n")


if __name__ == "__main__":
    main()
