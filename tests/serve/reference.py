#!/usr/bin/python3
"""Tiny random decoder checkpoints in Hugging Face layout, and their reference outputs.

Writes DIR/config.json, the weights (model.safetensors, or shards with an index), a GPT-2-style
tokenizer (vocab.json + merges.txt) for gpt2 and opt, and DIR/expected.json: the logits of
every position of a fixed token sequence and a greedy generation, both computed by the plain
PyTorch models below (written from the architectures' definitions, no transformers library),
on the weights as stored (rounded to the dtype, then read back as float32).

Usage: reference.py DIR FAMILY DTYPE [SHARDS]   FAMILY: gpt2 | gpt2-long | opt | llama; DTYPE: f32 | f16 | bf16
"""
import json
import math
import os
import shutil
import struct
import sys

import torch

torch.manual_seed(1234)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def write_tokenizer(out):
    symbols = [bytes_to_unicode()[b] for b in range(256)]
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"),
              ("o", "n"), ("Ġ", "s"), ("Ġ", "w"), ("r", "e")]
    vocab = {s: i for i, s in enumerate(symbols)}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return len(vocab)


DTYPES = {"f32": (torch.float32, "F32"), "f16": (torch.float16, "F16"),
          "bf16": (torch.bfloat16, "BF16")}


def write_safetensors(path, tensors, dtype):
    torch_dtype, name = DTYPES[dtype]
    header, blobs, offset = {}, [], 0
    for key in sorted(tensors):
        t = tensors[key].to(torch_dtype).contiguous()
        raw = t.view(torch.int16 if t.element_size() == 2 else torch.int32).numpy().tobytes()
        header[key] = {"dtype": name, "shape": list(t.shape),
                       "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def save(out, tensors, dtype, shards):
    if shards <= 1:
        write_safetensors(os.path.join(out, "model.safetensors"), tensors, dtype)
        return
    names = sorted(tensors)
    weight_map = {}
    for s in range(shards):
        part = names[s::shards]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(os.path.join(out, fname), {k: tensors[k] for k in part}, dtype)
        weight_map.update({k: fname for k in part})
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


def rnd(*shape, std=0.2):
    return torch.randn(*shape) * std


def gpt2_tensors(cfg):
    C, L, V, P = cfg["n_embd"], cfg["n_layer"], cfg["vocab_size"], cfg["n_positions"]
    t = {"wte.weight": rnd(V, C), "wpe.weight": rnd(P, C), "ln_f.weight": 1 + rnd(C),
         "ln_f.bias": rnd(C)}
    for i in range(L):
        p = f"h.{i}."
        t.update({p + "ln_1.weight": 1 + rnd(C), p + "ln_1.bias": rnd(C),
                  p + "attn.c_attn.weight": rnd(C, 3 * C), p + "attn.c_attn.bias": rnd(3 * C),
                  p + "attn.c_proj.weight": rnd(C, C), p + "attn.c_proj.bias": rnd(C),
                  p + "ln_2.weight": 1 + rnd(C), p + "ln_2.bias": rnd(C),
                  p + "mlp.c_fc.weight": rnd(C, 4 * C), p + "mlp.c_fc.bias": rnd(4 * C),
                  p + "mlp.c_proj.weight": rnd(4 * C, C), p + "mlp.c_proj.bias": rnd(C)})
    return t


def attention(q, k, v, heads, kv_heads):
    # q: [T, H*D], k, v: [T, KV*D]; causal.
    T = q.shape[0]
    D = q.shape[1] // heads
    q = q.view(T, heads, D).transpose(0, 1)
    k = k.view(T, kv_heads, D).transpose(0, 1).repeat_interleave(heads // kv_heads, dim=0)
    v = v.view(T, kv_heads, D).transpose(0, 1).repeat_interleave(heads // kv_heads, dim=0)
    s = q @ k.transpose(1, 2) / math.sqrt(D)
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    return (torch.softmax(s, -1) @ v).transpose(0, 1).reshape(T, heads * D)


def gpt2_forward(t, cfg, ids):
    C, H = cfg["n_embd"], cfg["n_head"]
    ln = lambda x, p: torch.nn.functional.layer_norm(x, (C,), t[p + ".weight"], t[p + ".bias"],
                                                      cfg["layer_norm_epsilon"])
    x = t["wte.weight"][ids] + t["wpe.weight"][torch.arange(len(ids))]
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        qkv = ln(x, p + "ln_1") @ t[p + "attn.c_attn.weight"] + t[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(C, -1)
        x = x + attention(q, k, v, H, H) @ t[p + "attn.c_proj.weight"] + t[p + "attn.c_proj.bias"]
        h = ln(x, p + "ln_2") @ t[p + "mlp.c_fc.weight"] + t[p + "mlp.c_fc.bias"]
        h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
        x = x + h @ t[p + "mlp.c_proj.weight"] + t[p + "mlp.c_proj.bias"]
    return ln(x, "ln_f") @ t["wte.weight"].T


def opt_tensors(cfg):
    C, L, V, F = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"], cfg["ffn_dim"]
    P = cfg["max_position_embeddings"] + 2
    d = "model.decoder."
    t = {d + "embed_tokens.weight": rnd(V, C), d + "embed_positions.weight": rnd(P, C),
         d + "final_layer_norm.weight": 1 + rnd(C), d + "final_layer_norm.bias": rnd(C)}
    for i in range(L):
        p = f"{d}layers.{i}."
        for n in ["q_proj", "k_proj", "v_proj", "out_proj"]:
            t[p + f"self_attn.{n}.weight"] = rnd(C, C)
            t[p + f"self_attn.{n}.bias"] = rnd(C)
        for n in ["self_attn_layer_norm", "final_layer_norm"]:
            t[p + n + ".weight"] = 1 + rnd(C)
            t[p + n + ".bias"] = rnd(C)
        t.update({p + "fc1.weight": rnd(F, C), p + "fc1.bias": rnd(F), p + "fc2.weight": rnd(C, F),
                  p + "fc2.bias": rnd(C)})
    return t


def opt_forward(t, cfg, ids):
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    d = "model.decoder."
    lin = lambda x, p: x @ t[p + ".weight"].T + t[p + ".bias"]
    ln = lambda x, p: torch.nn.functional.layer_norm(x, (C,), t[p + ".weight"], t[p + ".bias"])
    x = t[d + "embed_tokens.weight"][ids] + t[d + "embed_positions.weight"][torch.arange(len(ids)) + 2]
    for i in range(cfg["num_hidden_layers"]):
        p = f"{d}layers.{i}."
        h = ln(x, p + "self_attn_layer_norm")
        a = attention(lin(h, p + "self_attn.q_proj"), lin(h, p + "self_attn.k_proj"),
                      lin(h, p + "self_attn.v_proj"), H, H)
        x = x + lin(a, p + "self_attn.out_proj")
        h = torch.relu(lin(ln(x, p + "final_layer_norm"), p + "fc1"))
        x = x + lin(h, p + "fc2")
    return ln(x, d + "final_layer_norm") @ t[d + "embed_tokens.weight"].T


def llama_tensors(cfg):
    C, L, V, I = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"], cfg["intermediate_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = C // H
    t = {"model.embed_tokens.weight": rnd(V, C), "model.norm.weight": 1 + rnd(C),
         "lm_head.weight": rnd(V, C)}
    for i in range(L):
        p = f"model.layers.{i}."
        t.update({p + "input_layernorm.weight": 1 + rnd(C),
                  p + "post_attention_layernorm.weight": 1 + rnd(C),
                  p + "self_attn.q_proj.weight": rnd(H * D, C),
                  p + "self_attn.k_proj.weight": rnd(KV * D, C),
                  p + "self_attn.v_proj.weight": rnd(KV * D, C),
                  p + "self_attn.o_proj.weight": rnd(C, H * D),
                  p + "mlp.gate_proj.weight": rnd(I, C), p + "mlp.up_proj.weight": rnd(I, C),
                  p + "mlp.down_proj.weight": rnd(C, I)})
    return t


def rope(x, heads, theta):
    T = x.shape[0]
    D = x.shape[1] // heads
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cos(ang).float()[:, None, :], torch.sin(ang).float()[:, None, :]
    x = x.view(T, heads, D)
    a, b = x[..., : D // 2], x[..., D // 2:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], -1).reshape(T, heads * D)


def llama_forward(t, cfg, ids):
    H, KV, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rms_norm_eps"]
    theta = cfg["rope_theta"]
    rms = lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w
    lin = lambda x, p: x @ t[p + ".weight"].T
    x = t["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, t[p + "input_layernorm.weight"])
        q = rope(lin(h, p + "self_attn.q_proj"), H, theta)
        k = rope(lin(h, p + "self_attn.k_proj"), KV, theta)
        x = x + lin(attention(q, k, lin(h, p + "self_attn.v_proj"), H, KV), p + "self_attn.o_proj")
        h = rms(x, t[p + "post_attention_layernorm.weight"])
        g = lin(h, p + "mlp.gate_proj")
        x = x + lin(torch.nn.functional.silu(g) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    return rms(x, t["model.norm.weight"]) @ t["lm_head.weight"].T


def main():
    final, family, dtype = sys.argv[1], sys.argv[2], sys.argv[3]
    shards = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    # Written beside DIR and renamed into place, so tests running at once never see half a
    # checkpoint.
    out = f"{final}.tmp{os.getpid()}"
    os.makedirs(out, exist_ok=True)
    if family in ("gpt2", "gpt2-long"):
        vocab = write_tokenizer(out)
        long = family == "gpt2-long"  # a longer context, for tests that need time to pass
        cfg = {"model_type": "gpt2", "vocab_size": vocab, "n_embd": 128 if long else 32,
               "n_layer": 4 if long else 2, "n_head": 4, "n_positions": 2048 if long else 64,
               "layer_norm_epsilon": 1e-5,
               "activation_function": "gelu_new", "bos_token_id": vocab - 1,
               "eos_token_id": vocab - 1}
        tensors, forward = gpt2_tensors(cfg), gpt2_forward
    elif family == "opt":
        vocab = write_tokenizer(out)
        cfg = {"model_type": "opt", "vocab_size": vocab, "hidden_size": 32, "num_hidden_layers": 2,
               "num_attention_heads": 4, "ffn_dim": 64, "max_position_embeddings": 64,
               "do_layer_norm_before": True, "word_embed_proj_dim": 32,
               "activation_function": "relu", "bos_token_id": vocab - 1,
               "eos_token_id": vocab - 1}
        tensors, forward = opt_tensors(cfg), opt_forward
    else:
        cfg = {"model_type": "llama", "vocab_size": 300, "hidden_size": 32,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "intermediate_size": 48, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
               "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
               "bos_token_id": 1, "eos_token_id": 2}
        tensors, forward = llama_tensors(cfg), llama_forward
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save(out, tensors, dtype, shards)
    stored = {k: v.to(DTYPES[dtype][0]).float() for k, v in tensors.items()}
    V = cfg["vocab_size"]
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, V - 1, (12,), generator=g).tolist()
    with torch.no_grad():
        logits = forward(stored, cfg, torch.tensor(ids))
        greedy = list(ids)
        for _ in range(16):
            greedy.append(int(forward(stored, cfg, torch.tensor(greedy))[-1].argmax()))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"tokens": ids, "logits": logits.flatten().tolist(),
                   "greedy": greedy[len(ids):]}, f)
    try:
        os.rename(out, final)
    except OSError:
        shutil.rmtree(out)  # another run put it there first


if __name__ == "__main__":
    main()
