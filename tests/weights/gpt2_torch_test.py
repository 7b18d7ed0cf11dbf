#!/usr/bin/python3
"""alpa's GPT against a GPT-2 written here in plain PyTorch, through exported weights.

Trains gpt-tiny with alpa, exports a checkpoint as Hugging Face GPT-2 weights (f32, f16, bf16),
reads model.safetensors with a small reader of its own (numpy), runs a GPT-2 forward pass
written from the architecture (no transformers library) in float64, and compares its logits
with `alpa forward`'s on the same weights and tokens. Also checks config.json, the stored
dtypes' rounding, and that an MPI job started with --init-from continues the loss curve.
Prints "PASS: gpt2 torch reference" when every check holds.
"""
import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        raw = data[base + begin:base + end]
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4")
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float32)
        elif e["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: unexpected dtype {e['dtype']} of {name}")
        assert a.size == math.prod(e["shape"]), name
        out[name] = {"dtype": e["dtype"], "value": a.reshape(e["shape"]).copy()}
    return out, meta


def write_safetensors(path, tensors):
    """A second writer (F32), so alpa reads files it did not write."""
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    text = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def random_gpt2(path, cfg, rng):
    """GPT-2 weights large enough that every tensor moves the logits, saved the way a
    GPT2Model is (no "transformer." prefix), with its mask buffers and a tied lm_head."""
    C, V, T = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    t = {"wte.weight": rng.normal(0, 0.5, (V, C)), "wpe.weight": rng.normal(0, 0.5, (T, C))}
    shapes = {"ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (C, 3 * C),
              "attn.c_attn.bias": (3 * C,), "attn.c_proj.weight": (C, C),
              "attn.c_proj.bias": (C,), "ln_2.weight": (C,), "ln_2.bias": (C,),
              "mlp.c_fc.weight": (C, 4 * C), "mlp.c_fc.bias": (4 * C,),
              "mlp.c_proj.weight": (4 * C, C), "mlp.c_proj.bias": (C,)}
    for l in range(cfg["n_layer"]):
        for k, shape in shapes.items():
            scale = 0.5 / math.sqrt(shape[0]) * 4 if len(shape) == 2 else 0.3
            t[f"h.{l}.{k}"] = (1.0 if k.endswith("ln_1.weight") or k.endswith("ln_2.weight")
                               else 0.0) + rng.normal(0, scale, shape)
        t[f"h.{l}.attn.bias"] = np.tril(np.ones((T, T)))[None, None]
    t["ln_f.weight"] = 1.0 + rng.normal(0, 0.3, (C,))
    t["ln_f.bias"] = rng.normal(0, 0.3, (C,))
    t["lm_head.weight"] = t["wte.weight"]
    t = {k: v.astype(np.float32) for k, v in t.items()}
    write_safetensors(path, t)
    return {"transformer." + k: {"dtype": "F32", "value": v} for k, v in t.items()}


def gpt2_logits(weights, cfg, tokens):
    """GPT-2 (pre-LayerNorm, exact GELU, tied head) in float64 on a [B, T] token array."""
    def p(name):
        return torch.tensor(weights["transformer." + name]["value"], dtype=torch.float64)

    C, H = cfg["n_embd"], cfg["n_head"]
    D, eps = C // H, cfg["layer_norm_epsilon"]
    tok = torch.tensor(tokens, dtype=torch.long)
    B, T = tok.shape
    x = p("wte.weight")[tok] + p("wpe.weight")[:T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(cfg["n_layer"]):
        h = f"h.{l}."
        a = F.layer_norm(x, (C,), p(h + "ln_1.weight"), p(h + "ln_1.bias"), eps)
        qkv = a @ p(h + "attn.c_attn.weight") + p(h + "attn.c_attn.bias")
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in qkv.split(C, dim=2))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p(h + "attn.c_proj.weight") + p(h + "attn.c_proj.bias")
        m = F.layer_norm(x, (C,), p(h + "ln_2.weight"), p(h + "ln_2.bias"), eps)
        m = F.gelu(m @ p(h + "mlp.c_fc.weight") + p(h + "mlp.c_fc.bias"))  # erf form
        x = x + m @ p(h + "mlp.c_proj.weight") + p(h + "mlp.c_proj.bias")
    x = F.layer_norm(x, (C,), p("ln_f.weight"), p("ln_f.bias"), eps)
    return (x @ p("wte.weight").T).numpy()


def alpa(args, *cmd, mpi=0):
    argv = [args.alpa, *cmd]
    if mpi:
        argv = [args.mpiexec, "-np", str(mpi), *argv]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(argv)}\n{r.stdout}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1]) if "--json" in cmd else r.stdout


def bf16_round(a):
    bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32)


def check(cond, what):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--alpa", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--mpiexec", default="")
    args = ap.parse_args()
    w = args.work
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)

    train = alpa(args, "train", "--model", "gpt", "--size", "tiny", "--steps", "6", "--lr",
                 "1e-2", "--seed", "3", "--threads", "1", "--checkpoint-dir", f"{w}/ck",
                 "--checkpoint-every", "3", "--json")
    losses = train["losses"]
    for d in ("f32", "f16", "bf16"):
        alpa(args, "export", "--checkpoint", f"{w}/ck", "--format", "safetensors", "--out",
             f"{w}/hf-{d}", "--dtype", d, "--json")

    with open(f"{w}/hf-f32/config.json") as f:
        cfg = json.load(f)
    check(cfg["model_type"] == "gpt2" and cfg["activation_function"] == "gelu"
          and (cfg["n_embd"], cfg["n_layer"], cfg["n_head"], cfg["n_positions"],
               cfg["vocab_size"]) == (64, 2, 4, 32, 128) and cfg["layer_norm_epsilon"] == 1e-5,
          "config.json describes gpt-tiny as GPT-2")
    w32, meta = read_safetensors(f"{w}/hf-f32/model.safetensors")
    check(meta.get("format") == "pt" and meta.get("alpa.step") == "6", "metadata")
    check(len(w32) == 4 + 12 * 2 and w32["transformer.h.0.attn.c_attn.weight"]["value"].shape
          == (64, 192), "28 GPT-2 tensors, c_attn [C, 3C]")
    check(np.abs(w32["transformer.h.1.attn.c_attn.bias"]["value"]).max() > 1e-3,
          "biases are trained (not all zero)")
    w16, _ = read_safetensors(f"{w}/hf-f16/model.safetensors")
    wb16, _ = read_safetensors(f"{w}/hf-bf16/model.safetensors")
    check(all(np.array_equal(w16[n]["value"], w32[n]["value"].astype(np.float16)
                             .astype(np.float32)) and w16[n]["dtype"] == "F16" for n in w32),
          "f16 export is the f32 weights rounded to nearest even")
    check(all(np.array_equal(wb16[n]["value"], bf16_round(w32[n]["value"]))
              and wb16[n]["dtype"] == "BF16" for n in w32),
          "bf16 export is the f32 weights rounded to nearest even")

    rng = np.random.default_rng(0)
    os.makedirs(f"{w}/random")
    shutil.copy(f"{w}/hf-f32/config.json", f"{w}/random/config.json")
    wr = random_gpt2(f"{w}/random/model.safetensors", cfg, rng)
    for weights_dir, weights, B, T in ((f"{w}/hf-f32", w32, 4, 32), (f"{w}/hf-f32", w32, 3, 13),
                                       (f"{w}/hf-f16", w16, 4, 32), (f"{w}/hf-bf16", wb16, 2, 32),
                                       (f"{w}/random", wr, 4, 32)):
        tokens = rng.integers(0, 128, size=(B, T))
        tok_path = f"{w}/tokens-{B}x{T}.txt"
        with open(tok_path, "w") as f:
            f.write("\n".join(" ".join(str(t) for t in row) for row in tokens) + "\n")
        out = f"{w}/logits-{os.path.basename(weights_dir)}-{T}.safetensors"
        fw = alpa(args, "forward", "--weights", weights_dir, "--tokens", tok_path, "--out", out,
                  "--threads", "1", "--json")
        got = read_safetensors(out)[0]["logits"]["value"]
        ref = gpt2_logits(weights, cfg, tokens)
        diff = float(np.abs(got - ref).max())
        print(f"{os.path.basename(weights_dir)}, {B}x{T} tokens: max |logit| "
              f"{np.abs(ref).max():.3f}, max abs diff alpa vs torch float64 {diff:.2e}")
        tolerance = 1e-4 * max(1.0, float(np.abs(ref).max()) / 10)
        check(got.shape == (B, T, 128) and diff < tolerance,
              f"alpa forward equals the torch GPT-2 ({weights_dir}, {B}x{T})")
        check(fw["next_tokens"] == [int(i) for i in ref[:, -1].argmax(-1)], "next tokens")

    # An MPI job fine-tuning from the step-3 export sees step 4's batch first: its loss is the
    # loss the original run had at step 4.
    if args.mpiexec and os.path.exists(args.mpiexec):
        alpa(args, "export", "--checkpoint", f"{w}/ck/step-00000003", "--out", f"{w}/hf-step3",
             "--json")
        mpi = alpa(args, "train", "--backend", "mpi", "--mesh", "1x2", "--init-from",
                   f"{w}/hf-step3", "--data-offset", "3", "--steps", "1", "--lr", "1e-2",
                   "--seed", "3", "--json", mpi=2)
        first = mpi["losses"][0]
        print(f"mpi 1x2: loss at step 4 {losses[3]:.7f}, first loss from the export {first:.7f}")
        check(abs(first - losses[3]) <= 1e-5 * losses[3], "MPI --init-from continues the curve")
    print("PASS: gpt2 torch reference")


if __name__ == "__main__":
    main()
