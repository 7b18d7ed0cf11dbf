#!/usr/bin/python3
"""Load test of `alpa serve` on loopback: continuous vs static batching.

Writes a random GPT-2 checkpoint (--size), starts `alpa serve` once per mode, and for each
client count runs closed-loop clients (each sends its next streaming request when the last
one ends) for --seconds: prompts of 16-128 random token ids, max_tokens uniform in 8-64
(ignore_eos), so sequences end at different times. Modes alternate per client count
(continuous, static, continuous, ...). Reports generated tokens/s, p50/p99 time to first
token and p50/p99 inter-token latency (a request's (last - first token) / (tokens - 1)).

Usage: bench/serve_load.py [--build build/release] [--clients 1,8,32] [--seconds 20]
         [--size small|124m] [--threads 2]"""
import argparse
import http.client
import json
import os
import random
import statistics
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


def one_request(port, rng):
    prompt = [rng.randrange(50000) for _ in range(rng.randint(16, 128))]
    n = rng.randint(8, 64)
    body = json.dumps({"prompt": prompt, "max_tokens": n, "ignore_eos": True, "stream": True,
                       "temperature": 0})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
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
            fr = json.loads(event[6:])["choices"][0]["finish_reason"]
            finish = fr or finish
    conn.close()
    if first is None or finish != "length":
        return None
    itl = (last - first) / (n - 1) if n > 1 else 0
    return {"tokens": n, "ttft": first - t0, "itl": itl}


def load(port, clients, seconds):
    results, failures = [], [0]
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def client(i):
        rng = random.Random(i)
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
    wall = time.perf_counter() - t0
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
    ttft = [r["ttft"] for r in results]
    itl = [r["itl"] for r in results]
    return {"clients": clients, "requests": len(results), "failed": failures[0],
            "tokens_per_s": sum(r["tokens"] for r in results) / wall,
            "ttft_p50": q(ttft, .5), "ttft_p99": q(ttft, .99), "itl_p50": q(itl, .5),
            "itl_p99": q(itl, .99), "wall_s": wall}


def start_server(build, model, static, threads):
    cmd = [f"{build}/src/alpa", "serve", "--model", model, "--port", "0", "--threads",
           str(threads), "--max-running", "32", "--max-step-tokens", "512"]
    if static:
        cmd.append("--static-batching")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    banner = p.stdout.readline()
    port = int(banner.split("127.0.0.1:")[1].split(";")[0])
    return p, port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--size", default="small", choices=SIZES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model-dir", default="/tmp/alpa_serve_load_model")
    a = ap.parse_args()
    model = f"{a.model_dir}_{a.size}"
    write_model(model, a.size)
    rows = []
    for clients in [int(c) for c in a.clients.split(",")]:
        for static in (False, True):
            p, port = start_server(a.build, model, static, a.threads)
            r = load(port, clients, a.seconds)
            r["mode"] = "static" if static else "continuous"
            p.terminate()
            p.wait(timeout=60)
            print(json.dumps(r), flush=True)
            rows.append(r)
    print(f"\nsize {a.size}, {a.seconds:.0f} s per run, max_tokens 8-64, prompts 16-128 tokens")
    print(f"{'clients':>7} {'mode':>10} {'req':>5} {'fail':>4} {'tok/s':>8} {'TTFT p50':>9} "
          f"{'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8}")
    for r in rows:
        print(f"{r['clients']:>7} {r['mode']:>10} {r['requests']:>5} {r['failed']:>4} "
              f"{r['tokens_per_s']:>8.1f} {r['ttft_p50']:>8.3f}s {r['ttft_p99']:>8.3f}s "
              f"{r['itl_p50'] * 1000:>6.1f}ms {r['itl_p99'] * 1000:>6.1f}ms")


if __name__ == "__main__":
    main()
