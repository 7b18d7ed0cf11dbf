"""Writes the seeds of the onnx_model fuzz target (tests/fuzz/corpus/onnx_model): small
exports that reach the importer's shape folding, contractions, convolutions and losses.
Usage: make_fuzz_seeds.py OUT_DIR"""
import os
import sys
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x, y):
        return F.cross_entropy(self.b(torch.relu(self.a(x))), y)


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.e = nn.Embedding(5, 4)
        self.ln = nn.LayerNorm(4)

    def forward(self, t):
        x = self.ln(self.e(t))
        b, s, d = x.shape
        q = x.reshape(b, s, 2, 2).transpose(1, 2)
        p = torch.softmax(q @ q.transpose(2, 3), -1)
        return (p @ q).transpose(1, 2).reshape(b, s, d).sum(-1)


class Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3, padding=1)
        self.bn = nn.BatchNorm2d(2)
        self.t = nn.ConvTranspose2d(2, 1, 2, stride=2)

    def forward(self, x):
        y = F.max_pool2d(torch.relu(self.bn(self.c(x))), 2)
        return self.t(y).mean()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    cases = [
        ("mlp.onnx", Mlp(), (torch.randn(2, 3), torch.tensor([0, 1])), ["x", "y"], 13),
        ("attention.onnx", Attn(), (torch.tensor([[1, 2, 3]]),), ["t"], 17),
        ("conv.onnx", Conv(), (torch.randn(1, 1, 4, 4),), ["x"], 15),
    ]
    for name, model, args, names, opset in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, os.path.join(out, name), input_names=names,
                              output_names=["loss"], opset_version=opset,
                              dynamic_axes={n: {0: "batch"} for n in names},
                              do_constant_folding=False)


if __name__ == "__main__":
    main()
