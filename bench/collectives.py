#!/usr/bin/python3
"""Benchmark: collective bandwidth of the threads and MPI backends against raw MPI_Allreduce.

For 2 and 4 ranks (4 oversubscribes this 2-core machine), runs bench/collectives_bench once
per backend: the four collectives over the whole job at 4 KiB to 64 MiB per rank (all_reduce:
the buffer each rank holds; gather / scatter / all-to-all: the whole buffer, n blocks), and
Open MPI's own in-place MPI_Allreduce at the same sizes. Times are medians of repetitions
(the slowest rank's under MPI); bus bandwidth uses the usual factors, 2(n-1)/n for all_reduce
and (n-1)/n for the others.

Usage: /usr/bin/python3 bench/collectives.py [--ranks 2 4] [--record]
"""
import argparse
import datetime
import json
import os
import platform
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OPENBLAS_NUM_THREADS="1")


def run(cmd):
    out = subprocess.run(cmd, env=ENV, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def size_text(b):
    return f"{b >> 20} MiB" if b >= 1 << 20 else f"{b >> 10} KiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default=os.path.join(ROOT, "build/release/bench/collectives_bench"))
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--record", action="store_true")
    a = ap.parse_args()
    rows = {}
    for n in a.ranks:
        for r in run([a.bench, "--backend", "threads", "--ranks", str(n)]):
            rows[(n, r["op"], r["bytes"], "threads")] = r["seconds"]
        for r in run(["mpirun", "-np", str(n), a.bench, "--backend", "mpi"]):
            rows[(n, r["op"], r["bytes"], r["backend"])] = r["seconds"]
    lines = ["| ranks | collective | size | threads ms | threads busbw GB/s | MPI ms | MPI busbw GB/s "
             "| raw MPI_Allreduce ms | MPI / raw |", "|---|---|---|---|---|---|---|---|---|"]
    for n in a.ranks:
        for op in ["all_reduce", "all_gather", "reduce_scatter", "all_to_all"]:
            for b in sorted({k[2] for k in rows if k[0] == n and k[1] == op}):
                factor = 2 * (n - 1) / n if op == "all_reduce" else (n - 1) / n
                t = rows.get((n, op, b, "threads"))
                m = rows.get((n, op, b, "mpi"))
                raw = rows.get((n, "all_reduce", b, "raw MPI_Allreduce")) if op == "all_reduce" else None
                bw = lambda s: f"{factor * b / s / 1e9:.2f}" if s else ""
                ms = lambda s: f"{s * 1e3:.3f}" if s else ""
                ratio = f"{m / raw:.2f}x time" if (m and raw) else ""
                lines.append(f"| {n} | {op} | {size_text(b)} | {ms(t)} | {bw(t)} | {ms(m)} | {bw(m)} | "
                             f"{ms(raw)} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    if a.record:
        with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as f:
            f.write(f"\n## Collective bandwidth: threads and MPI backends vs raw MPI_Allreduce — "
                    f"{datetime.date.today().isoformat()}\n\n")
            f.write(f"- machine: {platform.processor() or 'x86_64'} 2-core VM, Open MPI 4.1.4 "
                    f"(shared memory, vader BTL); 4 ranks oversubscribe the 2 cores\n")
            f.write(f"- command: `/usr/bin/python3 bench/collectives.py --ranks "
                    f"{' '.join(map(str, a.ranks))} --record`\n\n")
            f.write(table + "\n")


if __name__ == "__main__":
    main()
