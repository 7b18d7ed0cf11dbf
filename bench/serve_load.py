#!/usr/bin/python3
"""Load test of `alpa serve` on loopback: continuous vs static batching.

Writes a random GPT-2 checkpoint (--size), starts `alpa serve` once per mode and load point,
and sends streaming requests for --seconds: prompts of 16-128 random token ids, max_tokens
uniform in 8-64 (ignore_eos), so sequences end at different times. Two kinds of load:

  closed loop (--clients N,...): N clients, each sending its next request when the last ends;
  open loop (--rates R,...): Poisson arrivals at R requests/s (exponential inter-arrival
    times, one connection per request, however many are outstanding); time to first token is
    measured from the scheduled arrival, so a server that falls behind pays for its queue.
    A rate written "0.5x" is that fraction of the capacity measured in the closed loop
    (requests/s of continuous batching at the largest client count).

Modes alternate per load point (continuous, static, continuous, ...). Reports generated
tokens/s, p50/p99 time to first token and p50/p99 inter-token latency (a request's (last -
first token) / (tokens - 1)).

Usage: bench/serve_load.py [--build build/release] [--clients 1,8,32,64] [--rates 0.5x,0.9x]
         [--seconds 20] [--size small|124m] [--threads 2] [--max-running 32]"""
import argparse
import collections
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "serve"))
import reference  # noqa: E402  (the checkpoint writer of the tests)

SIZES = {"small": (4, 256, 4), "124m": (12, 768, 12)}


def write_model(path, size):
    if os.path.exists(os.path.join(path, "config.json")):
        return
    layers, c, h = SIZES[size]
    cfg = {"model_type": "gpt2", "vocab_size": 50257, "n_embd": c, "n_layer": layers,
           "n_head": h, "n_positions": 1024, "layer_norm_epsilon": 1e-5,
           "activation_function": "gelu_new", "eos_token_id": 50256}
    os.makedirs(path, exist_ok=True)
    reference.write_safetensors(os.path.join(path, "model.safetensors"),
                                reference.gpt2_tensors(cfg), "f16")
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)


def make_request(rng):
    """A random request body: (JSON text, max_tokens)."""
    prompt = [rng.randrange(50000) for _ in range(rng.randint(16, 128))]
    n = rng.randint(8, 64)
    body = json.dumps({"prompt": prompt, "max_tokens": n, "ignore_eos": True, "stream": True,
                       "temperature": 0})
    return body, n


# Why requests failed (HTTP status, the stream's error, the exception), over all requests.
FAILURES = collections.Counter()
FAILURES_LOCK = threading.Lock()


def failed(reason):
    with FAILURES_LOCK:
        FAILURES[reason] += 1


def one_request(port, rng, t0=None):
    """Sends one streaming request; its tokens, TTFT (from t0, default now) and ITL, or None
    when it fails (a non-200 answer, a broken stream, a connection error)."""
    body, n = make_request(rng)
    if t0 is None:
        t0 = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            failed(f"HTTP {resp.status}: {resp.read()[:200]!r}")
            conn.close()
            return None
        first = last = None
        buf = b""
        finish = None
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                break
            now = time.perf_counter()
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                if not event.startswith(b"data: ") or event == b"data: [DONE]":
                    continue
                if first is None:
                    first = now
                last = now
                payload = json.loads(event[6:])
                if "error" in payload:
                    failed(f"stream error: {payload['error'].get('message', '')[:200]}")
                    conn.close()
                    return None
                fr = payload["choices"][0]["finish_reason"]
                finish = fr or finish
        conn.close()
    except (OSError, http.client.HTTPException, ValueError) as e:
        failed(f"{type(e).__name__}: {e}")
        return None
    if first is None or finish != "length":
        failed(f"finish_reason {finish}")
        return None
    itl = (last - first) / (n - 1) if n > 1 else 0
    return {"tokens": n, "ttft": first - t0, "itl": itl}


def quantile(xs, p):
    return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def summarize(results, failures, wall):
    ttft = [r["ttft"] for r in results]
    itl = [r["itl"] for r in results]
    return {"requests": len(results), "failed": failures,
            "tokens_per_s": sum(r["tokens"] for r in results) / wall,
            "requests_per_s": len(results) / wall,
            "ttft_p50": quantile(ttft, .5), "ttft_p99": quantile(ttft, .99),
            "itl_p50": quantile(itl, .5), "itl_p99": quantile(itl, .99), "wall_s": wall}


def load(port, clients, seconds, seed=0):
    """Closed loop: `clients` clients, each sending its next request when the last ends."""
    results, failures = [], [0]
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def client(i):
        rng = random.Random(seed * 1000003 + i)
        while time.perf_counter() < stop:
            r = one_request(port, rng)
            with lock:
                if r is None:
                    failures[0] += 1
                else:
                    results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    r = summarize(results, failures[0], time.perf_counter() - t0)
    r["load"] = f"{clients} clients"
    return r


def poisson(port, rate, seconds, seed=0):
    """Open loop: Poisson arrivals at `rate` requests/s for `seconds`; each request on its own
    thread, its TTFT measured from its scheduled arrival. Throughput counts until the last
    request ends."""
    results, failures = [], [0]
    lock = threading.Lock()
    arrivals_rng, body_rng = random.Random(seed), random.Random(seed + 1)
    schedule, t = [], arrivals_rng.expovariate(rate)
    while t < seconds:
        schedule.append(t)
        t += arrivals_rng.expovariate(rate)
    rngs = [random.Random(body_rng.random()) for _ in schedule]

    def request(at, rng):
        r = one_request(port, rng, t0=at)
        with lock:
            if r is None:
                failures[0] += 1
            else:
                results.append(r)

    t0 = time.perf_counter()
    threads = []
    for offset, rng in zip(schedule, rngs):
        delay = t0 + offset - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        th = threading.Thread(target=request, args=(t0 + offset, rng))
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    r = summarize(results, failures[0], time.perf_counter() - t0)
    r["load"] = f"{rate:.2f} req/s"
    r["rate"] = rate
    return r


def start_server(build, model, static, threads, max_running=32, extra=()):
    cmd = [f"{build}/src/alpa", "serve", "--model", model, "--port", "0", "--threads",
           str(threads), "--max-running", str(max_running), "--max-step-tokens", "512",
           *extra]
    if static:
        cmd.append("--static-batching")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    banner = p.stdout.readline()
    port = int(banner.split("127.0.0.1:")[1].split(";")[0])
    return p, port


def run_point(a, model, static, fn):
    p, port = start_server(a.build, model, static, a.threads, a.max_running)
    try:
        r = fn(port)
    finally:
        p.terminate()
        p.wait(timeout=60)
    r["mode"] = "static" if static else "continuous"
    with FAILURES_LOCK:
        r["failure_reasons"] = dict(FAILURES)
        FAILURES.clear()
    print(json.dumps(r), flush=True)
    return r


def print_table(rows):
    print("| load | mode | requests | failed | req/s | tokens/s | TTFT p50 | TTFT p99 | ITL p50 "
          "| ITL p99 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['load']} | {r['mode']} | {r['requests']} | {r['failed']} | "
              f"{r['requests_per_s']:.2f} | "
              f"{r['tokens_per_s']:.1f} | {r['ttft_p50']:.3f} s | {r['ttft_p99']:.3f} s | "
              f"{r['itl_p50'] * 1000:.1f} ms | {r['itl_p99'] * 1000:.1f} ms |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--clients", default="1,8,32,64")
    ap.add_argument("--rates", default="",
                    help="Poisson rates in requests/s; 'Fx' is F times the closed-loop capacity")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--size", default="small", choices=SIZES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-running", type=int, default=32)
    ap.add_argument("--model-dir", default="/tmp/alpa_serve_load_model")
    a = ap.parse_args()
    model = f"{a.model_dir}_{a.size}"
    write_model(model, a.size)
    rows = []
    for clients in [int(c) for c in a.clients.split(",") if c]:
        for static in (False, True):
            rows.append(run_point(a, model, static, lambda port: load(port, clients, a.seconds)))
    capacity = None
    closed = [r for r in rows if r["mode"] == "continuous"]
    if closed:
        capacity = max(closed, key=lambda r: int(r["load"].split()[0]))["requests_per_s"]
    rates = []
    for spec in [x for x in a.rates.split(",") if x]:
        if spec.endswith("x"):
            if capacity is None:
                sys.exit(f"--rates {spec}: a fraction of capacity needs a closed-loop run "
                         "(--clients)")
            rates.append(float(spec[:-1]) * capacity)
        else:
            rates.append(float(spec))
    for i, rate in enumerate(rates):
        for static in (False, True):
            rows.append(run_point(a, model, static,
                                  lambda port: poisson(port, rate, a.seconds, seed=i)))
    print(f"\nsize {a.size}, {a.seconds:.0f} s per run, max_tokens 8-64, prompts 16-128 tokens"
          + (f", capacity {capacity:.2f} req/s" if capacity else ""))
    print_table(rows)


if __name__ == "__main__":
    main()
