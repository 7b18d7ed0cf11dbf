#!/usr/bin/python3
"""PyTorch baseline for bench/train_step.py: one GPT training step (AdamW, fp32).

Same architecture as alpa-cpp's GPT (src/alpa/models/gpt.cc): token + position embeddings,
pre-LayerNorm blocks with causal multi-head attention (separate q/k/v projections) and an
erf-GELU MLP, final LayerNorm, LM head tied to the token embedding, mean cross-entropy.
Prints one JSON line: {"threads", "step_times_s", "median_s", "loss", "torch", "blas"}.
Run with Debian's interpreter: /usr/bin/python3 bench/torch_gpt_step.py --threads 2
"""
import argparse
import json
import math
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, H):
        super().__init__()
        self.H = H
        self.ln1 = nn.LayerNorm(C)
        self.q, self.k, self.v, self.o = (nn.Linear(C, C) for _ in range(4))
        self.ln2 = nn.LayerNorm(C)
        self.fc1 = nn.Linear(C, 4 * C)
        self.fc2 = nn.Linear(4 * C, C)

    def forward(self, x, mask):
        B, T, C = x.shape
        D = C // self.H
        h = self.ln1(x)
        q = self.q(h).view(B, T, self.H, D).transpose(1, 2)
        k = self.k(h).view(B, T, self.H, D).transpose(1, 2)
        v = self.v(h).view(B, T, self.H, D).transpose(1, 2)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        s = s.masked_fill(mask, -1e9)
        a = torch.softmax(s, dim=-1)
        y = (a @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.o(y)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Gpt(nn.Module):
    def __init__(self, L, C, H, T, V):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Parameter(torch.randn(T, C) * 0.02)
        self.blocks = nn.ModuleList(Block(C, H) for _ in range(L))
        self.lnf = nn.LayerNorm(C)
        self.register_buffer("mask", ~torch.tril(torch.ones(T, T, dtype=torch.bool)))
        # GPT-2 / alpa-cpp initialisation: N(0, 0.02) weights, zero biases.
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, tokens, labels):
        x = self.wte(tokens) + self.wpe[None]
        for b in self.blocks:
            x = b(x, self.mask)
        logits = self.lnf(x) @ self.wte.weight.T
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def add_model_arguments(ap):
    """The GPT-small shape (`alpa train --model gpt --size small`) as flags."""
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=8192)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    add_model_arguments(ap)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Gpt(a.layers, a.hidden, a.heads, a.seq, a.vocab)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq))
    labels = torch.randint(0, a.vocab, (a.batch, a.seq))
    times, loss = [], None
    for step in range(a.steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(tokens, labels)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if step >= 2:
            times.append(dt)
    print(json.dumps({
        "threads": a.threads,
        "step_times_s": times,
        "median_s": statistics.median(times),
        "loss": loss.item(),
        "torch": torch.__version__,
        "blas": os.environ.get("LD_LIBRARY_PATH", "system libblas.so.3 (OpenBLAS pthread)"),
        "parameters": sum(p.numel() for p in model.parameters()),
    }))


if __name__ == "__main__":
    main()
