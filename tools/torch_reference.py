#!/usr/bin/python3
"""Writes PyTorch reference fixtures for alpa-cpp's model tests.

For GPT-tiny and an MLP it draws float32 weights and inputs, computes the loss, the logits
and every parameter gradient with PyTorch in float64 (a reference more precise than the f32
executor under test), and writes them in alpa-cpp's fixture format:

  "ALPAFIX1", u32 count, then per tensor: u32 name length, name bytes, u32 rank,
  i64 dims[rank], f32 data (little-endian, row-major)

Tensor names: "param:<name>" (weights and inputs), "loss", "logits", "grad:<name>".
The model definitions mirror src/alpa/models/gpt.cc and mlp.cc parameter for parameter.

Run with Debian's interpreter (it has python3-torch): /usr/bin/python3 tools/torch_reference.py --out DIR
"""
import argparse
import math
import os
import struct

import torch
import torch.nn.functional as F

GPT = dict(layers=2, hidden=32, heads=4, seq=16, vocab=64, batch=2)
MLP = dict(batch=8, input=16, hidden=32, layers=2, classes=8)


def write_fixture(path, tensors):
    with open(path + ".tmp", "wb") as f:
        f.write(b"ALPAFIX1")
        f.write(struct.pack("<I", len(tensors)))
        for name, t in tensors:
            data = t.detach().to(torch.float32).contiguous()
            raw = name.encode()
            f.write(struct.pack("<I", len(raw)))
            f.write(raw)
            f.write(struct.pack("<I", data.dim()))
            for d in data.shape:
                f.write(struct.pack("<q", d))
            f.write(data.numpy().tobytes())
    os.replace(path + ".tmp", path)


def gpt_params(g, c):
    C, V, T = c["hidden"], c["vocab"], c["seq"]
    p = {"wte": torch.randn(V, C, generator=g) * 0.1, "wpe": torch.randn(T, C, generator=g) * 0.1}
    for l in range(c["layers"]):
        pre = f"h{l}."
        for ln in ("ln1", "ln2"):
            p[pre + ln + ".g"] = 1 + 0.1 * torch.randn(C, generator=g)
            p[pre + ln + ".b"] = 0.1 * torch.randn(C, generator=g)
        for w in ("wq", "wk", "wv", "wo"):
            p[pre + "attn." + w] = torch.randn(C, C, generator=g) / math.sqrt(C)
            p[pre + "attn.b" + w[1]] = 0.1 * torch.randn(C, generator=g)
        p[pre + "mlp.w1"] = torch.randn(C, 4 * C, generator=g) / math.sqrt(C)
        p[pre + "mlp.b1"] = 0.1 * torch.randn(4 * C, generator=g)
        p[pre + "mlp.w2"] = torch.randn(4 * C, C, generator=g) / math.sqrt(4 * C)
        p[pre + "mlp.b2"] = 0.1 * torch.randn(C, generator=g)
    p["lnf.g"] = 1 + 0.1 * torch.randn(C, generator=g)
    p["lnf.b"] = 0.1 * torch.randn(C, generator=g)
    return p


def gpt_forward(p, tokens, labels, c):
    B, T, C, H, V = c["batch"], c["seq"], c["hidden"], c["heads"], c["vocab"]
    D = C // H
    x = p["wte"][tokens] + p["wpe"][None]
    keep = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(c["layers"]):
        pre = f"h{l}."
        h = F.layer_norm(x, (C,), p[pre + "ln1.g"], p[pre + "ln1.b"], eps=1e-5)
        q = (h @ p[pre + "attn.wq"] + p[pre + "attn.bq"]).view(B, T, H, D)
        k = (h @ p[pre + "attn.wk"] + p[pre + "attn.bk"]).view(B, T, H, D)
        v = (h @ p[pre + "attn.wv"] + p[pre + "attn.bv"]).view(B, T, H, D)
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D)
        s = s.masked_fill(~keep, -1e9)
        a = torch.softmax(s, dim=-1)
        o = torch.einsum("bhqk,bkhd->bqhd", a, v).reshape(B, T, C)
        x = x + o @ p[pre + "attn.wo"] + p[pre + "attn.bo"]
        h2 = F.layer_norm(x, (C,), p[pre + "ln2.g"], p[pre + "ln2.b"], eps=1e-5)
        x = x + F.gelu(h2 @ p[pre + "mlp.w1"] + p[pre + "mlp.b1"]) @ p[pre + "mlp.w2"] + p[pre + "mlp.b2"]
    x = F.layer_norm(x, (C,), p["lnf.g"], p["lnf.b"], eps=1e-5)
    logits = x @ p["wte"].T
    loss = F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1))
    return loss, logits


def mlp_params(g, c):
    p, width = {}, c["input"]
    for l in range(c["layers"]):
        p[f"l{l}.w"] = torch.randn(width, c["hidden"], generator=g) / math.sqrt(width)
        p[f"l{l}.b"] = 0.1 * torch.randn(c["hidden"], generator=g)
        width = c["hidden"]
    p["out.w"] = torch.randn(width, c["classes"], generator=g) / math.sqrt(width)
    p["out.b"] = 0.1 * torch.randn(c["classes"], generator=g)
    return p


def mlp_forward(p, x, labels, c):
    h = x
    for l in range(c["layers"]):
        h = torch.relu(h @ p[f"l{l}.w"] + p[f"l{l}.b"])
    logits = h @ p["out.w"] + p["out.b"]
    return F.cross_entropy(logits, labels), logits


def reference(name, params, inputs, forward, c, out_dir):
    # Weights are float32 values; the computation runs in float64 on exactly those values.
    p64 = {k: v.to(torch.float32).to(torch.float64).requires_grad_(True) for k, v in params.items()}
    args = [t if not t.is_floating_point() else t.to(torch.float32).to(torch.float64) for t in inputs.values()]
    loss, logits = forward(p64, *args, c)
    loss.backward()
    tensors = [("param:" + k, v) for k, v in params.items()]
    tensors += [("param:" + k, v) for k, v in inputs.items()]
    tensors += [("loss", loss.reshape(())), ("logits", logits)]
    tensors += [("grad:" + k, v.grad) for k, v in p64.items()]
    write_fixture(os.path.join(out_dir, name + ".fix"), tensors)
    print(f"{name}: loss {loss.item():.6f}, {len(params)} weights -> {out_dir}/{name}.fix")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for the .fix files")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1234)

    c = GPT
    tokens = torch.randint(0, c["vocab"], (c["batch"], c["seq"]), generator=g)
    labels = torch.randint(0, c["vocab"], (c["batch"], c["seq"]), generator=g)
    reference("gpt_tiny", gpt_params(g, c), {"tokens": tokens, "labels": labels}, gpt_forward, c, args.out)

    c = MLP
    x = torch.randn(c["batch"], c["input"], generator=g)
    labels = torch.randint(0, c["classes"], (c["batch"],), generator=g)
    reference("mlp_tiny", mlp_params(g, c), {"x": x, "labels": labels}, mlp_forward, c, args.out)


if __name__ == "__main__":
    main()
