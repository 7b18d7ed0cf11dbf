#!/usr/bin/python3
"""Benchmark: planning with layouts carried across micro-batch counts against searching every
count's stage candidates (`--search-every-count`), on the paper suite's rows.

For each row of bench/paper_suite.py (GPT, MoE and Wide-ResNet on 8-64 V100s of p3.16xlarge by
default), `alpa plan --json` (which simulates the candidates it chooses among) runs once each
way per round, the two alternating (which goes
first alternates by round), and the table gives per row: planning time both ways and their
ratio, the intra-op ILPs solved and the candidates costed by another count's layouts, and the
simulated step time of the plan each way (the plan may differ where a costed layout stood for
a search). The machine is shared and noisy: compare the ratios, not the absolute seconds.

Usage: /usr/bin/python3 bench/count_reuse.py [--alpa build/release/src/alpa]
           [--families gpt moe wresnet] [--min-gpus 8] [--repeat 1] [--timeout 600] [--record]
"""
import argparse
import datetime
import os
import statistics
import sys

from benchlib import cpu_name
from paper_suite import ROWS, alpa_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = {"reuse": [], "search": ["--search-every-count"]}


def figures(j):
    if "error" in j or "planning" not in j:
        return None
    p = j["planning"]
    return {"s": j["planning_time_s"], "step": j.get("simulated_step_time_s", float("nan")),
            "fits": j.get("fits_memory", False), "solves": p["intra_solves"],
            "reused": p.get("reused_across_counts", 0)}


def step(f):
    return f"{f['step']:.3f}" + ("" if f["fits"] else " (over memory)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alpa", default=os.path.join(ROOT, "build/release/src/alpa"))
    ap.add_argument("--families", nargs="+", default=["gpt", "moe", "wresnet"],
                    choices=sorted(ROWS))
    ap.add_argument("--min-gpus", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    a = ap.parse_args()
    if not os.access(a.alpa, os.X_OK):
        sys.exit(f"count_reuse.py: no alpa binary at {a.alpa} (build first, or give --alpa)")

    lines = ["| row | planning s (search every count) | planning s (reuse) | ratio | "
             "ILPs (search / reuse) | costed by another count | simulated step s (search / reuse) |",
             "|---|---|---|---|---|---|---|"]
    total = {"search": 0.0, "reuse": 0.0}
    for family in a.families:
        for size, gpus in ROWS[family]:
            if gpus < a.min_gpus:
                continue
            runs = {m: [] for m in MODES}
            for r in range(a.repeat):
                order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
                for m in order:
                    j = alpa_json(a.alpa, "plan", family, size, gpus, MODES[m], a.timeout)
                    f = figures(j)
                    if f is None:
                        print(f"{family}-{size}/{gpus} {m}: {str(j.get('error'))[:300]}",
                              file=sys.stderr)
                    runs[m].append(f)
            ok = {m: [f for f in runs[m] if f] for m in MODES}
            if not ok["search"] or not ok["reuse"]:
                lines.append(f"| {family}-{size}/{gpus} | failed | | | | | |")
                print(lines[-1], flush=True)
                continue
            med = {m: statistics.median(f["s"] for f in ok[m]) for m in MODES}
            for m in MODES:
                total[m] += med[m]
            s, u = ok["search"][0], ok["reuse"][0]
            lines.append(f"| {family}-{size}/{gpus} | {med['search']:.1f} | {med['reuse']:.1f} | "
                         f"{med['search'] / med['reuse']:.2f}x | {s['solves']} / {u['solves']} | "
                         f"{u['reused']} | {step(s)} / {step(u)} |")
            print(lines[-1], flush=True)
    lines.append(f"| all rows | {total['search']:.1f} | {total['reuse']:.1f} | "
                 f"{total['search'] / max(total['reuse'], 1e-9):.2f}x | | | |")
    table = "\n".join(lines)
    print(table)
    if a.record:
        cmd = " ".join(["/usr/bin/python3", "bench/count_reuse.py"] + sys.argv[1:])
        with open(os.path.join(ROOT, "bench/RESULTS.md"), "a") as out:
            out.write(f"\n## Layouts carried across micro-batch counts — {datetime.date.today()}\n\n"
                      f"- machine: {cpu_name()}, {os.cpu_count()} cores\n"
                      f"- command: `{cmd}`\n\n{table}\n")


if __name__ == "__main__":
    main()
