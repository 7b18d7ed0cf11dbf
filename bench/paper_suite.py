#!/usr/bin/python3
"""Benchmark: the Alpa paper's end-to-end suite (Fig. 7) planned and simulated on p3.16xlarge.

For every row of the paper's Table 4 — GPT (350M on 1 GPU ... 39B on 64), GShard MoE (380M ...
70B) and Wide-ResNet (250M ... 13B) — plans and simulates one training step on that many
V100 16 GB GPUs of p3.16xlarge (8 per host, NVLink, 25 Gbit/s between hosts), global batch
1024 sequences (GPT, MoE) or 1536 images (Wide-ResNet; 1520 for 13B), with:

  alpa        `alpa simulate` (the whole plan space: stages, meshes, intra-op ILP)
  intra-only  `--space intra-only` (one stage on every GPU: auto-sharding alone)
  inter-only  `--space inter-only` (one GPU per stage: pipeline alone)
  baselines   `--baseline megatron` (GPT), `deepspeed` (MoE), `pp-dp` (Wide-ResNet): the
              paper's baseline of each family, grid-searched and simulated the same way
              (--all-baselines runs all three on every family)

and prints, per family, PFLOPS of the whole cluster for each system next to Alpa's published
Fig. 7 value (alpa.md §5.3, read from the figure) and each row's planning time. Then the checks
of the suite: alpa-cpp >= the best baseline on every row; MoE at 16 GPUs >= 3.5x DeepSpeed;
Wide-ResNet at 32 GPUs >= 85% of linear scaling (per-GPU throughput against 1 GPU); GPT from
16 GPUs >= 1.05x Megatron; the Megatron baseline against Megatron-LM's published GPT values
(relative error, counted both ways, see below); the planner's peak memory per stage against
the simulator's (goal: within 5%); and planning time (goals: every row under 60 s, the suite
under 10 minutes).

PFLOPS: GPT by Megatron's formula (72 B s h^2 l (1 + s/6h) + 6 B s h V per step: the model's
FLOPs, whatever a plan recomputes; a plan that recomputes pays for it in step time), MoE and
Wide-ResNet by the training graph's FLOPs. Alpa's published numbers count the FLOPs of
rematerialisation (96 instead of 72), so for the Megatron baseline, which checkpoints every
layer as its users run it, the check also gives its PFLOPS counted that way (the layers' term
x 96/72, the vocabulary projection's once). A run whose simulated peak memory
exceeds 16 GB is marked "x" (out of memory), as the figure marks them.

Usage: /usr/bin/python3 bench/paper_suite.py [--families gpt moe wresnet] [--max-gpus 64]
                                             [--timeout 900] [--all-baselines] [--record]
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

ROWS = {
    "gpt": [("350m", 1), ("760m", 2), ("1.3b", 4), ("2.6b", 8), ("6.7b", 16), ("15b", 32),
            ("39b", 64)],
    "moe": [("380m", 1), ("690m", 2), ("1.3b", 4), ("2.4b", 8), ("10b", 16), ("27b", 32),
            ("70b", 64)],
    "wresnet": [("250m", 1), ("500m", 2), ("1b", 4), ("2b", 8), ("4b", 16), ("6.8b", 32),
                ("13b", 64)],
}
BATCH = {"gpt": 1024, "moe": 1024, "wresnet": 1536}
BATCH_OVERRIDE = {("wresnet", "13b"): 1520}
PAPER_BASELINE = {"gpt": "megatron", "moe": "deepspeed", "wresnet": "pp-dp"}

# Fig. 7 (alpa.md §5.3), PFLOPS by GPU count: (baseline, inter-only, intra-only, alpa).
# None: no bar or not readable; "x": out of memory / not runnable; "L": on the linear box
# (the value used is the box's).
LINEAR = {
    "gpt": {1: 0.05, 4: 0.19, 8: 0.38, 16: 0.77, 32: 1.52, 64: 3.05},
    "moe": {1: 0.045, 4: 0.18, 8: 0.36, 16: 0.72, 32: 1.44, 64: 2.86},
    "wresnet": {1: 0.0085, 4: 0.033, 8: 0.068, 16: 0.135, 32: 0.269, 64: 0.537},
}
FIG7 = {
    "gpt": {1: ("L", "L", "L", "L"), 4: ("L", "L", "L", 0.21), 8: ("L", 0.43, "L", 0.47),
            16: (0.89, 0.94, 0.74, 0.94), 32: (1.84, 1.57, 1.10, 1.89),
            64: (3.69, 3.21, 0.11, 3.63)},
    "moe": {1: ("L", "L", "L", "L"), 4: (0.19, 0.14, 0.14, 0.14), 8: (0.30, 0.30, 0.34, 0.34),
            16: (0.19, 0.47, 0.35, 0.70), 32: (0.115, "x", 0.03, 1.20),
            64: ("x", "x", None, 2.28)},
    "wresnet": {1: ("L", "L", "L", "L"), 4: (0.03, 0.023, 0.03, 0.03),
                8: (0.06, 0.041, 0.06, 0.065), 16: (0.0, 0.0, 0.073, 0.106),
                32: ("x", "x", 0.059, 0.209), 64: ("x", "x", 0.041, 0.337)},
}


def fig7(family, gpus, i):
    row = FIG7[family].get(gpus)
    if row is None:
        return None
    v = row[i]
    return LINEAR[family][gpus] if v == "L" else v


# GPT shapes (layers, hidden, sequence, vocabulary), as src/alpa/models/gpt.cc.
GPT_SHAPE = {"350m": (24, 1024), "760m": (24, 1536), "1.3b": (24, 2048), "2.6b": (32, 2560),
             "6.7b": (32, 4096), "15b": (48, 5120), "39b": (48, 8192)}


def recompute_factor(size, seq=1024, vocab=51200):
    """Megatron's FLOPs with every layer recomputed over its FLOPs without: (96 X + 6 V h) /
    (72 X + 6 V h) per token, X = l h^2 (1 + s / 6h)."""
    l, h = GPT_SHAPE[size]
    x = l * h * h * (1 + seq / (6 * h))
    return (96 * x + 6 * vocab * h) / (72 * x + 6 * vocab * h)


def stage_memory_error(j):
    """(worst |planned - simulated| / simulated peak over the stages, its stage), or None."""
    worst = None
    for i, st in enumerate(j.get("stages", []) if "error" not in j else []):
        sim, planned = st.get("peak_memory_bytes"), st.get("planner_peak_memory_bytes")
        if sim and planned is not None:
            e = abs(planned - sim) / sim
            if worst is None or e > worst[0]:
                worst = (e, i)
    return worst


def simulate(alpa, family, size, gpus, extra, timeout):
    return alpa_json(alpa, "simulate", family, size, gpus, extra, timeout)


def alpa_json(alpa, command, family, size, gpus, extra, timeout):
    """`alpa COMMAND --json` of one row on p3.16xlarge: its JSON (with wall_s), or {"error": ...}."""
    batch = BATCH_OVERRIDE.get((family, size), BATCH[family])
    cmd = [alpa, command, "--model", family, "--size", size, "--cluster", "p3.16xlarge",
           "--gpus", str(gpus), "--batch", str(batch), "--json"] + extra
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        out = p.stdout.strip().splitlines()
        j = json.loads(out[-1]) if out else {"error": p.stderr.strip()[-300:]}
    except subprocess.TimeoutExpired:
        j = {"error": f"timed out after {timeout} s"}
    j["wall_s"] = time.monotonic() - t0
    return j


def error_text(j):
    e = j.get("error", "")
    return e.get("message", "") if isinstance(e, dict) else str(e)


def pflops(j):
    if "error" in j or not j.get("fits_memory", False):
        return None
    return j["pflops"]


def cell(j):
    if "error" in j:
        msg = error_text(j)
        if "timed out" in msg:
            return "timeout"
        if "fits" in msg:
            return "x (no plan fits)"
        if "no pipeline plan for" in msg:
            return "x (too few layers)"
        return "error"  # the JSON file has the message
    if not j.get("fits_memory", False):
        return f"x ({j['peak_memory_bytes'] / 1e9:.1f} GB)"
    return f"{j['pflops']:.3f}"


def ref(v):
    return "" if v is None else ("x" if v == "x" else f"{v:.3f}".rstrip("0").rstrip("."))




def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alpa", default=os.path.join(ROOT, "build/release/src/alpa"))
    ap.add_argument("--families", nargs="*", default=list(ROWS))
    ap.add_argument("--max-gpus", type=int, default=64)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per simulate run")
    ap.add_argument("--all-baselines", action="store_true")
    ap.add_argument("--systems", nargs="*", default=["alpa", "intra-only", "inter-only", "baseline"])
    ap.add_argument("--record", action="store_true", help="append the tables to bench/RESULTS.md")
    ap.add_argument("--json-out", help="write every run's JSON report to this file (after each run)")
    ap.add_argument("--load", nargs="*", default=[],
                    help="JSON files of earlier runs (--json-out): their runs are not run again")
    args = ap.parse_args()
    if not os.path.exists(args.alpa):
        sys.exit(f"no alpa binary at {args.alpa}: build first (cmake --build --preset release)")

    started = time.monotonic()
    runs = {}
    for path in args.load:
        with open(path) as f:
            runs.update(json.load(f))
    lines = []
    checks, memory_rows, plan_rows = [], [], []
    alpa_plan_s = 0.0
    baseline_s = 0.0
    for family in args.families:
        if family not in ROWS:
            sys.exit(f"unknown family {family}; families: {', '.join(ROWS)}")
        baselines = list(PAPER_BASELINE.values()) if args.all_baselines else [PAPER_BASELINE[family]]
        systems = []
        for s in args.systems:
            if s == "baseline":
                systems += [("baseline:" + b, ["--baseline", b]) for b in baselines]
            elif s == "alpa":
                systems.append(("alpa", []))
            else:
                systems.append((s, ["--space", s]))
        header = (["GPUs", "model"] + [name.split(":")[-1] for name, _ in systems] +
                  [f"Fig. 7 {PAPER_BASELINE[family]}", "Fig. 7 inter-only", "Fig. 7 intra-only",
                   "Fig. 7 Alpa", "alpa-cpp plan", "best baseline plan", "planning s (alpa / baseline)"])
        table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        one_gpu = None
        for size, gpus in ROWS[family]:
            if gpus > args.max_gpus:
                continue
            row = {}
            for name, extra in systems:
                key = f"{family}-{size}/{gpus}/{name}"
                if key in runs:
                    row[name] = runs[key]
                    continue
                print(f"[{time.monotonic() - started:7.0f} s] {family}-{size} on {gpus}: {name} ...",
                      file=sys.stderr, flush=True)
                j = simulate(args.alpa, family, size, gpus, extra, args.timeout)
                row[name] = j
                runs[key] = j
                if args.json_out:
                    with open(args.json_out, "w") as f:
                        json.dump(runs, f, indent=1)
            alpa_plan_s += row.get("alpa", {}).get("wall_s", 0)
            baseline_s += sum(j.get("wall_s", 0) for n, j in row.items() if n.startswith("baseline:"))
            a = row.get("alpa", {"error": {}})
            best_b, best_name = None, ""
            for name, j in row.items():
                if name.startswith("baseline:") and pflops(j) is not None and (
                        best_b is None or pflops(j) > best_b):
                    best_b, best_name = pflops(j), name
            desc = ""
            if "stages" in a and "error" not in a:
                desc = f"{len(a['stages'])} stage(s), " + ", ".join(
                    f"{st['logical_mesh'][0]}x{st['logical_mesh'][1]}" for st in a["stages"][:6])
                desc += ("..." if len(a["stages"]) > 6 else "") + f"; {a['micro_batches']} mb"
            bdesc = ""
            if best_name:
                c = row[best_name]["config"]
                bdesc = f"dp{c['dp']} tp{c['tp']} pp{c['pp']} {c['micro_batches']} mb ({c['per_stage']})"
            bwall = sum(j["wall_s"] for n, j in row.items() if n.startswith("baseline:"))
            cells = ([str(gpus), f"{family}-{size}"] + [cell(row[n]) for n, _ in systems] +
                     [ref(fig7(family, gpus, i)) for i in range(4)] +
                     [desc, bdesc, f"{a.get('wall_s', 0):.1f} / {bwall:.1f}"])
            table.append("| " + " | ".join(cells) + " |")
            print(table[-1], file=sys.stderr, flush=True)
            pa = pflops(a)
            if gpus == 1 and pa is not None:
                one_gpu = pa
            if best_b is not None:
                ok = pa is not None and pa >= best_b * (1 - 1e-9)
                checks.append(f"{family}-{size}/{gpus}: alpa-cpp {ref(pa) or 'x'} vs best baseline "
                              f"{best_b:.3f} ({best_name.split(':')[1]}): "
                              f"{'ok' if ok else 'BELOW'}" +
                              (f" ({pa / best_b:.2f}x)" if pa else ""))
            if family == "moe" and gpus == 16 and "baseline:deepspeed" in row:
                d = pflops(row["baseline:deepspeed"])
                r = (pa / d) if (pa and d) else None
                checks.append(f"MoE at 16 GPUs: alpa-cpp / DeepSpeed = " +
                              (f"{r:.2f}x (target >= 3.5x)" if r else
                               f"n/a (alpa-cpp {ref(pa) or 'x'}, deepspeed {ref(d) or 'x'})"))
            if family == "wresnet" and gpus == 32 and one_gpu and pa:
                eff = pa / (one_gpu * 32)
                checks.append(f"Wide-ResNet at 32 GPUs: {100 * eff:.0f}% of linear scaling "
                              f"(target >= 85%)")
            if family == "gpt" and "baseline:megatron" in row:
                m = pflops(row["baseline:megatron"])
                if gpus >= 16 and m and pa:
                    checks.append(f"GPT-{size}/{gpus}: alpa-cpp / Megatron = {pa / m:.2f}x "
                                  f"(target >= 1.05x)")
                pub = fig7("gpt", gpus, 0)
                if pub not in (None, "x"):
                    hw = m * recompute_factor(size) if m else None
                    checks.append(f"Megatron GPT-{size}/{gpus}: simulated {ref(m) or 'x'} vs "
                                  f"published {ref(pub)}" +
                                  (f": error {100 * (m - pub) / pub:+.0f}%; counting its "
                                   f"recomputation as Fig. 7 does {hw:.3f}, error "
                                   f"{100 * (hw - pub) / pub:+.0f}%" if m else ""))
            worst = stage_memory_error(a)
            if worst is not None:
                memory_rows.append((worst[0], f"{family}-{size}/{gpus}", worst[1]))
            if "error" not in a and a.get("plan_time_s") is not None:
                plan_rows.append((a["plan_time_s"], f"{family}-{size}/{gpus}"))
        lines += [f"### {family}", "", *table, ""]
    if memory_rows:
        within = sum(1 for w, _, _ in memory_rows if w <= 0.05)
        over = ", ".join(f"{name} {100 * w:.1f}% (stage {st})"
                         for w, name, st in sorted(memory_rows, reverse=True) if w > 0.05)
        checks.append(f"planner vs simulator peak memory, worst stage per alpa-cpp row: "
                      f"{within} of {len(memory_rows)} rows within 5%" +
                      (f"; over: {over}" if over else ""))
    if plan_rows:
        fast = sum(1 for t, _ in plan_rows if t < 60)
        slow = max(plan_rows)
        checks.append(f"planning time (planning_time_s) per alpa-cpp row: {fast} of "
                      f"{len(plan_rows)} rows under 60 s; slowest {slow[1]} {slow[0]:.0f} s; "
                      f"all rows {sum(t for t, _ in plan_rows):.0f} s")
    total = sum(j.get("wall_s", 0) for k, j in runs.items() if k.split("-")[0] in args.families)
    summary = [f"- alpa-cpp planning (and simulating) time, all rows: {alpa_plan_s:.0f} s; "
               f"baseline grid searches: {baseline_s:.0f} s; every run of the suite: {total:.0f} s"]
    out = "\n".join(lines + ["Checks:", ""] + [f"- {c}" for c in checks] + summary)
    print(out)
    if args.record:
        cmd = "/usr/bin/python3 bench/paper_suite.py " + " ".join(sys.argv[1:])
        with open(os.path.join(ROOT, "bench", "RESULTS.md"), "a") as f:
            f.write(f"\n## Paper suite (Fig. 7) simulated on p3.16xlarge — "
                    f"{datetime.date.today().isoformat()}\n\n"
                    f"- machine: {cpu_name()}, {os.cpu_count()} cores\n"
                    f"- command: `{cmd.strip()}`\n\n{out}\n")


if __name__ == "__main__":
    main()
