#!/usr/bin/python3
"""Memory of `alpa serve` per process: how much of the model each process holds.

Writes a random GPT-2 checkpoint (--size; 124m: GPT-2-124M's shapes, stored f16), starts
`alpa serve` in each split below, waits for it to listen, reads the peak resident memory
(VmHWM) of every alpa process from /proc, then drains it (SIGTERM, or SIGUSR1 to mpirun).

  one device            alpa serve
  threads, mesh 1x2     alpa serve --mesh 1x2          (one process, a thread per device)
  threads, 2 stages     alpa serve --pipeline 2
  mpi, mesh 1x2         mpirun -np 2 alpa serve --backend mpi --mesh 1x2
  mpi, 2 stages         mpirun -np 2 alpa serve --backend mpi --pipeline 2

With --before ALPA (another build), each split runs with both binaries in turn (before, after,
before, after for --repeat 2), and the table gives the ratio of the two peaks. --speed also
times generation over HTTP once the peak is read: one request, then 8 at once (32-token
prompts, 48 greedy tokens each), medians over the repeats.

Usage: bench/serve_memory.py [--build build/release] [--before OTHER_ALPA] [--size 124m]
         [--repeat 1] [--mpirun mpirun] [--kv-memory-mb 16] [--speed]"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_load import SIZES, write_model  # noqa: E402  (the load test's checkpoint)
from benchlib import status_mb  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OPENBLAS_NUM_THREADS="1")
SPLITS = [
    ("one device", False, []),
    ("threads, mesh 1x2", False, ["--mesh", "1x2"]),
    ("threads, 2 stages", False, ["--pipeline", "2"]),
    ("mpi, mesh 1x2", True, ["--mesh", "1x2"]),
    ("mpi, 2 stages", True, ["--pipeline", "2"]),
]


def serve_processes(model):
    """PIDs of the `alpa serve` processes of this model."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 2 and os.path.basename(argv[0]).startswith(b"alpa") and \
                argv[1] == b"serve" and model.encode() in argv:
            pids.append(int(pid))
    return sorted(pids)


def speed(port):
    """Generated tokens/s of one request, then of 8 at once (32-token prompts, 48 tokens each,
    greedy), after one request to warm up."""
    def one():
        body = {"prompt": list(range(100, 132)), "max_tokens": 48, "ignore_eos": True,
                "temperature": 0}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions",
                                     json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=600).read()
    one()
    rates = []
    for n in (1, 8):
        t0 = time.time()
        clients = [threading.Thread(target=one) for _ in range(n)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        rates.append(n * 48 / (time.time() - t0))
    return rates


def run(alpa, mpirun, model, mpi, split, kv_mb, timed):
    """(peak MB per process, seconds until listening, [tokens/s at 1 and 8 requests])."""
    cmd = [alpa, "serve", "--model", model, "--port", "0", "--threads", "2",
           "--kv-memory-mb", str(kv_mb)] + split
    if mpi:
        cmd = [mpirun, "-np", "2"] + cmd[:2] + ["--backend", "mpi"] + cmd[2:]
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    banner = p.stdout.readline()
    ready = time.time() - t0
    if "127.0.0.1:" not in banner:
        p.kill()
        sys.exit(f"{' '.join(cmd)}: no banner: {banner!r} {p.stderr.read()[-800:]}")
    time.sleep(0.5)
    peaks = [status_mb(pid, "VmHWM") for pid in serve_processes(model)]
    port = int(banner.split("127.0.0.1:")[1].split(";")[0])
    rates = speed(port) if timed else []
    p.send_signal(signal.SIGUSR1 if mpi else signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
    return peaks, ready, rates


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--before", help="another alpa binary to compare with")
    ap.add_argument("--size", default="124m", choices=sorted(SIZES))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--mpirun", default="mpirun")
    ap.add_argument("--kv-memory-mb", type=int, default=16)
    ap.add_argument("--speed", action="store_true",
                    help="also time generation (1 and 8 requests at once; medians over "
                         "--repeat); give the KV cache room, e.g. --kv-memory-mb 64")
    a = ap.parse_args()
    alpa = os.path.abspath(os.path.join(a.build, "src", "alpa"))
    model = os.path.join(tempfile.gettempdir(), f"alpa_serve_memory_{a.size}")
    write_model(model, a.size)
    stored = os.path.getsize(os.path.join(model, "model.safetensors")) / 2**20
    print(f"checkpoint: GPT-2 {a.size} ({stored:.0f} MB stored f16, "
          f"{2 * stored:.0f} MB as f32 values)")
    binaries = [("before", a.before), ("after", alpa)] if a.before else [("alpa", alpa)]
    rows = []
    for label, mpi, split in SPLITS:
        got, rates = {}, {}
        for _ in range(a.repeat):
            for which, binary in binaries:
                peaks, ready, r = run(binary, a.mpirun, model, mpi, split, a.kv_memory_mb,
                                      a.speed)
                rates.setdefault(which, []).append(r)
                prev = got.get(which)
                if prev is None or sum(peaks) < sum(prev[0]):
                    got[which] = (peaks, ready)
        rows.append((label, got, rates))
    head = f"{'split':<20}" + "".join(
        f"{w + ' peak MB per process':>34}{w + ' ready s':>17}" for w, _ in binaries)
    if a.before:
        head += f"{'after/before (sum)':>20}"
    if a.speed:
        head += "".join(f"{w + ' tok/s 1 | 8':>24}" for w, _ in binaries)
    print(head)
    for label, got, rates in rows:
        line = f"{label:<20}"
        for which, _ in binaries:
            peaks, ready = got[which]
            per = " + ".join(f"{x:.0f}" for x in peaks)
            line += f"{per + (f' = {sum(peaks):.0f}' if len(peaks) > 1 else ''):>34}{ready:>17.2f}"
        if a.before:
            line += f"{sum(got['after'][0]) / sum(got['before'][0]):>20.2f}"
        if a.speed:
            for which, _ in binaries:
                one = statistics.median(r[0] for r in rates[which])
                eight = statistics.median(r[1] for r in rates[which])
                line += f"{f'{one:.1f} | {eight:.1f}':>24}"
        print(line)


if __name__ == "__main__":
    main()
