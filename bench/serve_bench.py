#!/usr/bin/python3
"""Prefill and decode tokens/s of alpa's serving decoder against a PyTorch eager GPT-2 with a
KV cache, same shapes (random weights), runs interleaved (alpa, torch, alpa, torch, ...).

Usage: bench/serve_bench.py [--build build/release] [--repeats 3] [--threads 2]
         [--batches 1,16] [--prompt 128] [--decode 32] [--size 124m|small]
         [--splits 1x1,2x1,1x2]
Prints one JSON line per run and a summary table (medians).

--splits TxS,...: instead of the PyTorch comparison, alpa alone on each split (T tensor-parallel
devices per stage, i.e. --mesh 1xT; S pipeline stages), interleaved, against the first split."""
import argparse
import json
import math
import statistics
import subprocess
import time

import torch

SIZES = {"124m": (12, 768, 12, 50257, 1024), "small": (4, 256, 4, 50257, 1024)}


class Block(torch.nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = torch.nn.LayerNorm(c), torch.nn.LayerNorm(c)
        self.qkv, self.proj = torch.nn.Linear(c, 3 * c), torch.nn.Linear(c, c)
        self.fc, self.out = torch.nn.Linear(c, 4 * c), torch.nn.Linear(4 * c, c)

    def forward(self, x, cache):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, -1)
        shape = lambda t: t.view(B, T, self.h, C // self.h).transpose(1, 2)
        q, k, v = shape(q), shape(k), shape(v)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        s = q @ k.transpose(-1, -2) / math.sqrt(C // self.h)
        if T > 1:
            S = k.shape[2]
            mask = torch.ones(T, S, dtype=torch.bool).triu(S - T + 1)
            s = s.masked_fill(mask, float("-inf"))
        a = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(a)
        h = self.fc(self.ln2(x))
        h = 0.5 * h * (1 + torch.tanh(0.7978845608028654 * (h + 0.044715 * h ** 3)))
        return x + self.out(h), (k, v)


class Gpt(torch.nn.Module):
    def __init__(self, layers, c, h, vocab, positions):
        super().__init__()
        self.wte, self.wpe = torch.nn.Embedding(vocab, c), torch.nn.Embedding(positions, c)
        self.blocks = torch.nn.ModuleList(Block(c, h) for _ in range(layers))
        self.ln = torch.nn.LayerNorm(c)

    def forward(self, ids, start, caches):
        x = self.wte(ids) + self.wpe(torch.arange(start, start + ids.shape[1]))
        new = []
        for b, cache in zip(self.blocks, caches):
            x, kv = b(x, cache)
            new.append(kv)
        return self.ln(x[:, -1]) @ self.wte.weight.T, new


def torch_run(model, batch, prompt, decode):
    ids = torch.randint(0, model.wte.num_embeddings, (batch, prompt + decode))
    with torch.inference_mode():
        t0 = time.perf_counter()
        _, caches = model(ids[:, :prompt], 0, [None] * len(model.blocks))
        t1 = time.perf_counter()
        for s in range(decode):
            _, caches = model(ids[:, prompt + s: prompt + s + 1], prompt + s, caches)
        t2 = time.perf_counter()
    return {"impl": "torch", "batch": batch, "prompt": prompt, "decode": decode,
            "prefill_tokens_per_s": batch * prompt / (t1 - t0),
            "decode_tokens_per_s": batch * decode / (t2 - t1)}


def alpa_run(a, batch, tensor=1, stages=1):
    layers, c, h, vocab, positions = SIZES[a.size]
    cmd = [f"{a.build}/bench/serve_bench", str(layers), str(c), str(h), str(vocab),
           str(positions), str(batch), str(a.prompt), str(a.decode), str(a.threads)]
    if tensor * stages > 1:
        cmd += [str(tensor), str(stages)]
    env = {"OPENBLAS_NUM_THREADS": str(a.threads), "PATH": "/usr/bin:/bin"}
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                     env=env).stdout)


def compare_splits(a):
    splits = [tuple(int(x) for x in s.split("x")) for s in a.splits.split(",")]
    batches = [int(b) for b in a.batches.split(",")]
    results = []
    for rep in range(a.repeats):
        for batch in batches:
            for tensor, stages in splits:
                r = alpa_run(a, batch, tensor, stages)
                r["repeat"] = rep
                print(json.dumps(r), flush=True)
                results.append(r)
    print(f"\nmedians over {a.repeats} interleaved runs; size {a.size}, prompt {a.prompt}, "
          f"decode {a.decode}, {a.threads} threads shared by the devices")
    print(f"{'batch':>5} {'split':>26} {'prefill tok/s':>14} {'decode tok/s':>13} "
          f"{'decode vs first':>16}")
    for batch in batches:
        base = None
        for tensor, stages in splits:
            rows = [r for r in results if r["batch"] == batch and r["tensor"] == tensor
                    and r["stages"] == stages]
            pre = statistics.median(r["prefill_tokens_per_s"] for r in rows)
            dec = statistics.median(r["decode_tokens_per_s"] for r in rows)
            base = base or dec
            name = ("one device" if tensor * stages == 1 else
                    f"mesh 1x{tensor}" + (f", {stages} stages" if stages > 1 else "")
                    if tensor > 1 else f"{stages} pipeline stages")
            print(f"{batch:>5} {name:>26} {pre:>14.1f} {dec:>13.1f} {dec / base:>15.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--size", default="124m", choices=SIZES)
    ap.add_argument("--splits", default="")
    a = ap.parse_args()
    if a.splits:
        return compare_splits(a)
    torch.set_num_threads(a.threads)
    layers, c, h, vocab, positions = SIZES[a.size]
    model = Gpt(layers, c, h, vocab, positions).eval()
    results = []
    for rep in range(a.repeats):
        for batch in [int(b) for b in a.batches.split(",")]:
            ours = alpa_run(a, batch)
            theirs = torch_run(model, batch, a.prompt, a.decode)
            for r in (ours, theirs):
                r["repeat"] = rep
                print(json.dumps(r), flush=True)
                results.append(r)
    print(f"\nmedians over {a.repeats} interleaved runs; size {a.size}, prompt {a.prompt}, "
          f"decode {a.decode}, {a.threads} threads")
    print(f"{'batch':>5} {'phase':>8} {'alpa tok/s':>11} {'torch tok/s':>12} {'speedup':>8}")
    for batch in [int(b) for b in a.batches.split(",")]:
        for phase in ("prefill", "decode"):
            key = f"{phase}_tokens_per_s"
            med = {impl: statistics.median(r[key] for r in results
                                           if r["impl"] == impl and r["batch"] == batch)
                   for impl in ("alpa", "torch")}
            print(f"{batch:>5} {phase:>8} {med['alpa']:>11.1f} {med['torch']:>12.1f} "
                  f"{med['alpa'] / med['torch']:>7.2f}x")


if __name__ == "__main__":
    main()
