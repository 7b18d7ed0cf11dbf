#!/usr/bin/python3
"""Benchmark: one GPT training step, alpa-cpp against PyTorch on the same machine.

Model: 4 layers, hidden 512, 8 heads, seq 256, batch 8, vocab 8192, fp32, AdamW
(`alpa train --model gpt --size small`; bench/torch_gpt_step.py is the same model in PyTorch).
For each thread count the two are run alternately, --reps times, each run reporting its median
step time after warm-up; the table gives the medians, the speedup (median of the per-pair
ratios torch/alpa, so machine noise affects both sides of each pair alike) and alpa-cpp's
achieved GFLOP/s against this CPU's measured FP32 peak.

PyTorch runs in its best configuration found on this machine: Debian's torch 1.13 with
OpenBLAS's SkylakeX kernels forced (OPENBLAS_CORETYPE; Debian's OpenBLAS otherwise falls back to
Prescott kernels on this CPU) and, for 2 threads, the OpenMP build of OpenBLAS
(libopenblas0-openmp), which gave its fastest steps.

Also times building the GPT-39B training-step graph (`alpa graph --size 39b`).

Usage: /usr/bin/python3 bench/train_step.py [--reps 5] [--threads 1 2] [--record]
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
PEAK_GFLOPS = {1: 233.0, 2: 433.0}  # measured FMA peak of this CPU (toolchain notes)
OPENMP_BLAS = "/usr/lib/x86_64-linux-gnu/openblas-openmp"


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def torch_env(threads):
    env = dict(os.environ, OPENBLAS_CORETYPE="SkylakeX", OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    if threads > 1 and os.path.exists(os.path.join(OPENMP_BLAS, "libblas.so.3")):
        env["LD_LIBRARY_PATH"] = OPENMP_BLAS
    return env


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpa", default=os.path.join(ROOT, "build/release/src/alpa"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    a = ap.parse_args()

    rows = []
    for t in a.threads:
        torch_s, alpa_s, ratios, flops, blas = [], [], [], 0.0, "?"
        for rep in range(a.reps):
            tj = run_json(["/usr/bin/python3", os.path.join(ROOT, "bench/torch_gpt_step.py"),
                           "--threads", str(t), "--steps", "5"], torch_env(t))
            aj = run_json([a.alpa, "train", "--model", "gpt", "--size", "small", "--steps", "6",
                           "--threads", str(t), "--json"], dict(os.environ))
            torch_s.append(tj["median_s"])
            alpa_s.append(aj["step_time_s"])
            ratios.append(tj["median_s"] / aj["step_time_s"])
            flops, blas = aj["flops_per_step"], aj.get("blas_core", "?")
            print(f"threads {t} rep {rep + 1}: torch {tj['median_s']:.3f} s, alpa {aj['step_time_s']:.3f} s",
                  file=sys.stderr)
        ta, aa = statistics.median(torch_s), statistics.median(alpa_s)
        gf = flops / aa / 1e9
        rows.append((t, ta, aa, statistics.median(ratios), min(ratios), max(ratios), gf,
                     100 * gf / PEAK_GFLOPS.get(t, PEAK_GFLOPS[2]), blas))

    builds = [run_json([a.alpa, "graph", "--model", "gpt", "--size", "39b", "--json"],
                       dict(os.environ))["build_time_s"] for _ in range(3)]

    lines = [
        "| threads | PyTorch s/step | alpa-cpp s/step | speedup (median, min-max) | alpa-cpp GFLOP/s | % of FP32 peak |",
        "|---|---|---|---|---|---|",
    ]
    for t, ta, aa, r, rlo, rhi, gf, pct, _ in rows:
        lines.append(f"| {t} | {ta:.3f} | {aa:.3f} | {r:.2f}x ({rlo:.2f}-{rhi:.2f}) | {gf:.0f} | {pct:.0f}% |")
    lines.append("")
    lines.append(f"GPT-39B training-step graph (30k nodes) built in {statistics.median(builds) * 1e3:.0f} ms "
                 f"(median of 3).")
    table = "\n".join(lines)
    print(table)

    if a.record:
        cmd = "/usr/bin/python3 bench/train_step.py " + " ".join(sys.argv[1:])
        with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
            f.write(f"\n## GPT training step vs PyTorch — {datetime.date.today().isoformat()}\n\n")
            f.write(f"- machine: {machine()}; alpa-cpp BLAS kernels: {rows[-1][8]}\n")
            f.write(f"- command: `{cmd}` ({a.reps} interleaved repetitions per thread count)\n")
            f.write(f"- FLOPs per step: {flops / 1e9:.1f} GFLOP (alpa-cpp's count of the whole step)\n\n")
            f.write(table + "\n")


if __name__ == "__main__":
    main()
