"""The PyTorch models the ONNX tests export: small instances of five architectures.

Each entry of MODELS gives a module factory, example inputs, how the loss is made (the module
returns it, or alpa adds --loss on an output), the opset and the export mode. Weights are
initialised from a fixed seed, so every script that builds a model builds the same one.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class EncoderLayer(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d)
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, 4 * d)
        self.ff2 = nn.Linear(4 * d, d)

    def attention(self, x, mask):
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(x).split(d, dim=2)
        q = q.reshape(b, t, h, d // h).transpose(1, 2)
        k = k.reshape(b, t, h, d // h).transpose(1, 2)
        v = v.reshape(b, t, h, d // h).transpose(1, 2)
        s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(d // h)
        if mask is not None:
            s = s.masked_fill(mask, -1e9)
        p = torch.softmax(s, dim=-1)
        y = torch.matmul(p, v).transpose(1, 2).reshape(b, t, d)
        return self.proj(y)


class BertLayer(EncoderLayer):
    def forward(self, x):
        x = self.ln1(x + self.attention(x, None))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class Bert(nn.Module):
    """BERT-style encoder with a [CLS] classifier; returns its cross-entropy loss."""

    def __init__(self, vocab=40, seq=8, d=32, heads=2, layers=2, classes=3):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        self.ln = nn.LayerNorm(d)
        self.layers = nn.ModuleList([BertLayer(d, heads) for _ in range(layers)])
        self.pool = nn.Linear(d, d)
        self.cls = nn.Linear(d, classes)

    def forward(self, tokens, labels):
        t = tokens.shape[1]
        pos = torch.arange(t, device=tokens.device)
        x = self.ln(self.tok(tokens) + self.pos(pos))
        for layer in self.layers:
            x = layer(x)
        pooled = torch.tanh(self.pool(x[:, 0]))
        logits = self.cls(pooled)
        return F.cross_entropy(logits, labels)


class GptBlock(EncoderLayer):
    def forward(self, x, mask):
        x = x + self.attention(self.ln1(x), mask)
        h = self.ff1(self.ln2(x))
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3))))
        return x + self.ff2(h)


class Gpt(nn.Module):
    """GPT-2-style decoder (pre-LN, causal mask, tied LM head); returns its LM loss."""

    def __init__(self, vocab=48, seq=8, d=32, heads=2, layers=2):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(seq, d)
        self.blocks = nn.ModuleList([GptBlock(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.register_buffer("causal", torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1))

    def forward(self, tokens, labels):
        b, t = tokens.shape
        x = self.wte(tokens) + self.wpe(torch.arange(t, device=tokens.device))
        for blk in self.blocks:
            x = blk(x, self.causal[:t, :t])
        logits = torch.matmul(self.ln_f(x), self.wte.weight.t())
        return F.cross_entropy(logits.reshape(b * t, -1), labels.reshape(b * t))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """ResNet-18-style: stem conv + BN + max pool, basic blocks, global average pool, FC."""

    def __init__(self, classes=5, width=8):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.stem(x))))
        x = self.layer2(self.layer1(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class TwoTower(nn.Module):
    """Two-tower recommender: user and item towers, a dot-product score (Einsum)."""

    def __init__(self, users=30, items=50, d=16):
        super().__init__()
        self.user = nn.Embedding(users, d)
        self.item = nn.Embedding(items, d)
        self.ut = nn.Sequential(nn.Linear(d + 4, 32), nn.ReLU(), nn.Linear(32, d))
        self.it = nn.Sequential(nn.Linear(d, 32), nn.Sigmoid(), nn.Linear(32, d))

    def forward(self, user_id, item_id, user_feat):
        u = self.ut(torch.cat([self.user(user_id), user_feat], dim=1))
        i = self.it(self.item(item_id))
        return torch.einsum("bd,bd->b", u, i)


class UNet(nn.Module):
    """U-Net: conv blocks, max-pool down, transposed-conv up, skip concatenations; MSE loss."""

    def __init__(self, c=4):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout),
                                 nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())

        self.d1 = block(1, c)
        self.d2 = block(c, 2 * c)
        self.mid = block(2 * c, 4 * c)
        self.u2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2)
        self.b2 = block(4 * c, 2 * c)
        self.u1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.b1 = block(2 * c, c)
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, x, target):
        a = self.d1(x)
        b = self.d2(F.max_pool2d(a, 2))
        m = self.mid(F.avg_pool2d(b, 2))
        y = self.b2(torch.cat([self.u2(m), b], dim=1))
        y = self.b1(torch.cat([self.u1(y), a], dim=1))
        return ((self.out(y) - target) ** 2).mean()


def _inputs(name, batch, g):
    if name == "bert":
        return {"tokens": torch.randint(0, 40, (batch, 8), generator=g),
                "labels": torch.randint(0, 3, (batch,), generator=g)}
    if name == "gpt":
        return {"tokens": torch.randint(0, 48, (batch, 8), generator=g),
                "labels": torch.randint(0, 48, (batch, 8), generator=g)}
    if name == "resnet":
        return {"x": torch.randn(batch, 3, 16, 16, generator=g)}
    if name == "twotower":
        return {"user_id": torch.randint(0, 30, (batch,), generator=g),
                "item_id": torch.randint(0, 50, (batch,), generator=g),
                "user_feat": torch.randn(batch, 4, generator=g)}
    return {"x": torch.randn(batch, 1, 8, 8, generator=g),
            "target": torch.randn(batch, 1, 8, 8, generator=g)}


# name: (factory, loss (None: the module returns it; else alpa's --loss), opset, train mode,
#        output name, learning rate)
MODELS = {
    "bert": (Bert, None, 14, False, "loss", 0.1),
    "gpt": (Gpt, None, 17, False, "loss", 0.1),
    "resnet": (ResNet, "cross_entropy", 13, True, "logits", 0.05),
    "twotower": (TwoTower, "mse", 15, False, "score", 0.05),
    "unet": (UNet, None, 16, True, "loss", 0.05),
}
BATCH = 4


def build(name):
    torch.manual_seed(1234)
    factory = MODELS[name][0]
    model = factory()
    # Distinct values in every tensor: the exporter merges initializers that are equal (fresh
    # LayerNorm/BatchNorm weights are all ones), which would tie weights PyTorch keeps apart.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    return model


def inputs(name, batch=BATCH, seed=7):
    g = torch.Generator().manual_seed(seed)
    return _inputs(name, batch, g)


def labels_for(name, batch=BATCH, seed=11):
    """Labels of an alpa-added loss (--loss), or None."""
    g = torch.Generator().manual_seed(seed)
    if name == "resnet":
        return torch.randint(0, 5, (batch,), generator=g)
    if name == "twotower":
        return torch.randn(batch, generator=g)
    return None


def loss_of(name, model, ins, labels):
    out = model(**ins)
    kind = MODELS[name][1]
    if kind == "cross_entropy":
        return F.cross_entropy(out, labels), out
    if kind == "mse":
        return ((out - labels) ** 2).mean(), out
    return out, out


def export(name, model, path):
    _, _, opset, train_mode, out_name, _ = MODELS[name]
    ins = inputs(name)
    names = list(ins.keys())
    dyn = {k: {0: "batch"} for k in names}
    if out_name != "loss":
        dyn[out_name] = {0: "batch"}
    mode = torch.onnx.TrainingMode.TRAINING if train_mode else torch.onnx.TrainingMode.EVAL
    model.train(train_mode)
    torch.onnx.export(model, tuple(ins[k] for k in names), path, input_names=names,
                      output_names=[out_name], dynamic_axes=dyn, opset_version=opset,
                      training=mode, do_constant_folding=False)
