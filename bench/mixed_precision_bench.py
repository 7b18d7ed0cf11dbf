#!/usr/bin/python3
"""Benchmark: mixed precision, one GPT-small training step in f32 and bf16, alpa-cpp and PyTorch.

Model: GPT-small (4 layers, hidden 512, 8 heads, seq 256, batch 8, vocab 8192, AdamW), as
`alpa train --model gpt --size small` builds it and bench/torch_gpt_step.py writes it in PyTorch.
- alpa-cpp f32: `alpa train ... --dtype f32`; bf16: `--dtype bf16` (the mixed-precision pass:
  f32 master weights, every forward and backward GEMM in bf16 on oneDNN with f32 accumulation).
- PyTorch (Debian's torch 1.13): f32 as in bench/train_step.py (its best configuration here:
  OpenBLAS SkylakeX kernels, the OpenMP OpenBLAS for 2 threads, torch.set_num_threads);
  bf16 with torch.autocast('cpu', dtype=torch.bfloat16) around the forward and loss (the
  weights and optimizer stay f32; autocast runs matmuls/linear in bf16 through oneDNN).
alpa-cpp runs without an inherited OPENBLAS_CORETYPE (OpenBLAS picks its kernels, and alpa-cpp
upgrades a fallback choice: runtime/blas.h).
For each thread count the four configurations run one after another, --reps times
(interleaved, so machine noise affects all alike); each run reports its median step time after
warm-up. The table gives the medians and the ratios of medians.

Usage: /usr/bin/python3 bench/mixed_precision_bench.py [--reps 3] [--threads 1 2] [--record]
       /usr/bin/python3 bench/mixed_precision_bench.py --torch-step --threads 2 [--bf16]
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def torch_step(a):
    """One process: PyTorch GPT-small steps in f32 or under bf16 autocast; prints JSON."""
    import torch
    import torch_gpt_step as tg
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = tg.Gpt(a.layers, a.hidden, a.heads, a.seq, a.vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq))
    labels = torch.randint(0, a.vocab, (a.batch, a.seq))
    times, loss = [], None
    for step in range(a.steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = model(tokens, labels)
        loss.backward()
        opt.step()
        if step >= 2:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"threads": a.threads, "bf16": a.bf16, "median_s": statistics.median(times),
                      "loss": loss.item(), "torch": torch.__version__}))


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def alpa_env():
    """alpa-cpp picks its own OpenBLAS kernels (an inherited OPENBLAS_CORETYPE would pin them)."""
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    return env


def bench(a):
    import train_step as ts  # torch_env (PyTorch's best BLAS setup here) and machine()
    configs = ["alpa f32", "alpa bf16", "torch f32", "torch bf16"]
    rows = []
    for t in a.threads:
        times = {c: [] for c in configs}
        for rep in range(a.reps):
            for c in configs:
                dt = c.split()[1]
                if c.startswith("alpa"):
                    j = run_json([a.alpa, "train", "--model", "gpt", "--size", "small", "--steps",
                                  str(a.alpa_steps), "--threads", str(t), "--dtype", dt, "--json"],
                                 alpa_env())
                    s = j["step_time_s"]
                else:
                    cmd = ["/usr/bin/python3", os.path.abspath(__file__), "--torch-step",
                           "--threads", str(t), "--steps", "3"] + (["--bf16"] if dt == "bf16" else [])
                    s = run_json(cmd, ts.torch_env(t))["median_s"]
                times[c].append(s)
                print(f"threads {t} rep {rep + 1} {c}: {s:.3f} s", file=sys.stderr)
        rows.append((t, {c: statistics.median(v) for c, v in times.items()}))
    lines = [
        "| threads | alpa f32 s | alpa bf16 s | torch f32 s | torch bf16 s | alpa f32/bf16 | "
        "torch f32/bf16 | alpa f32 / torch f32 | alpa bf16 / torch bf16 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t, m in rows:
        lines.append(
            f"| {t} | {m['alpa f32']:.3f} | {m['alpa bf16']:.3f} | {m['torch f32']:.3f} | "
            f"{m['torch bf16']:.3f} | {m['alpa f32'] / m['alpa bf16']:.2f}x | "
            f"{m['torch f32'] / m['torch bf16']:.2f}x | {m['alpa f32'] / m['torch f32']:.2f} | "
            f"{m['alpa bf16'] / m['torch bf16']:.2f} |")
    table = "\n".join(lines)
    print(table)
    if a.record:
        cmd = "/usr/bin/python3 bench/mixed_precision_bench.py " + " ".join(sys.argv[1:])
        with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
            f.write(f"\n## Mixed precision: GPT-small step in f32 and bf16 — "
                    f"{datetime.date.today().isoformat()}\n\n")
            f.write(f"- machine: {ts.machine()}\n")
            f.write(f"- command: `{cmd}` ({a.reps} interleaved repetitions of the four "
                    f"configurations per thread count; medians)\n\n")
            f.write(table + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpa", default=os.path.join(ROOT, "build/release/src/alpa"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--alpa-steps", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    ap.add_argument("--torch-step", action="store_true", help="run PyTorch steps in this process")
    ap.add_argument("--bf16", action="store_true", help="with --torch-step: bf16 autocast")
    import torch_gpt_step as tg
    tg.add_model_arguments(ap)
    a = ap.parse_args()
    if a.torch_step:
        a.threads = a.threads[0]
        torch_step(a)
    else:
        bench(a)


if __name__ == "__main__":
    main()
