#!/usr/bin/python3
"""Soak test of `alpa serve`: --clients closed-loop streaming clients (the requests of
bench/serve_load.py) against one server for --seconds, counting failed requests (a non-200
answer, a broken stream, a connection error), and every --every seconds sampling the server's
resident memory (VmRSS in /proc/PID/status) and its /metrics gauges (KV blocks used, running
sequences, queue length). After the clients stop, the KV blocks in use must return to 0; the
memory trend is reported as first/last/max RSS and the least-squares slope (MB per minute)
over all samples and over the second half.

Usage: bench/serve_soak.py [--build build/release] [--clients 64] [--seconds 600] [--every 10]
         [--size small] [--threads 2] [--max-running 32]
Exit status 1 when a request failed or KV blocks were left in use."""
import argparse
import http.client
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import serve_load  # noqa: E402
from benchlib import status_mb  # noqa: E402


def rss_mb(pid):
    return status_mb(pid, "VmRSS")


def metrics(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def slope_mb_per_min(samples):
    """Least-squares slope of RSS over time, MB per minute."""
    if len(samples) < 2:
        return 0.0
    ts = [s["t"] for s in samples]
    ys = [s["rss_mb"] for s in samples]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mt) ** 2 for t in ts)
    return 60 * sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / var if var else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--every", type=float, default=10)
    ap.add_argument("--size", default="small", choices=serve_load.SIZES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-running", type=int, default=32)
    ap.add_argument("--model-dir", default="/tmp/alpa_serve_load_model")
    a = ap.parse_args()
    model = f"{a.model_dir}_{a.size}"
    serve_load.write_model(model, a.size)
    p, port = serve_load.start_server(a.build, model, False, a.threads, a.max_running)
    samples, done = [], threading.Event()
    t0 = time.perf_counter()

    def sample():
        m = metrics(port)
        s = {"t": time.perf_counter() - t0, "rss_mb": rss_mb(p.pid),
             "kv_blocks_used": m.get("alpa_kv_blocks_used", -1),
             "running": m.get("alpa_running_sequences", -1),
             "waiting": m.get("alpa_queue_length", -1)}
        samples.append(s)
        print(json.dumps(s), flush=True)

    def sampler():
        while not done.wait(a.every):
            sample()

    sample()
    th = threading.Thread(target=sampler)
    th.start()
    try:
        r = serve_load.load(port, a.clients, a.seconds, seed=17)
    finally:
        done.set()
        th.join()
    time.sleep(1)  # the last streams' sequences are released after their final event
    end = metrics(port)
    final_rss = rss_mb(p.pid)
    p.terminate()
    p.wait(timeout=120)
    half = [s for s in samples if s["t"] >= a.seconds / 2]
    rss = [s["rss_mb"] for s in samples]
    report = {
        "clients": a.clients, "seconds": a.seconds, "requests": r["requests"],
        "failed": r["failed"], "tokens_per_s": r["tokens_per_s"],
        "ttft_p50": r["ttft_p50"], "ttft_p99": r["ttft_p99"],
        "itl_p50": r["itl_p50"], "itl_p99": r["itl_p99"],
        "kv_blocks_used_max": max(s["kv_blocks_used"] for s in samples),
        "kv_blocks_used_end": end.get("alpa_kv_blocks_used", -1),
        "running_end": end.get("alpa_running_sequences", -1),
        "rss_first_mb": rss[0], "rss_last_mb": final_rss, "rss_max_mb": max(rss + [final_rss]),
        "rss_slope_mb_per_min": slope_mb_per_min(samples),
        "rss_slope_second_half_mb_per_min": slope_mb_per_min(half),
        "finished_total": end.get('alpa_requests_total{outcome="finished"}', -1),
        "cancelled_total": end.get('alpa_requests_total{outcome="cancelled"}', -1),
        "rejected_total": end.get('alpa_requests_total{outcome="rejected"}', -1),
        "samples": len(samples), "failure_reasons": dict(serve_load.FAILURES)}
    print(json.dumps(report, indent=1))
    ok = r["failed"] == 0 and report["kv_blocks_used_end"] == 0
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
