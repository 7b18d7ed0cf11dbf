"""Exports the test models to ONNX and writes PyTorch's reference numbers for each.

Usage: make_models.py --work DIR
For every model in models.MODELS, DIR/<name>/ gets
  model.onnx   torch.onnx.export of the module (symbolic batch)
  ref.json     inputs, the loss spec, the forward output(s) and loss, every weight's gradient
               (by initializer name) and 20 SGD steps of losses, all from PyTorch
"""
import argparse
import json
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

STEPS = 20


def flat(t):
    return [float(v) for v in t.detach().double().reshape(-1).tolist()]


def entry(t):
    return {"shape": list(t.shape), "values": flat(t)}


def reference(name, work):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    model = models.build(name)
    path = os.path.join(d, "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models.export(name, model, path)
    _, loss_kind, opset, train_mode, out_name, lr = models.MODELS[name]
    model = models.build(name)  # export may touch buffers; start again from the seed
    model.train(train_mode)
    ins = models.inputs(name)
    labels = models.labels_for(name)
    params = dict(model.named_parameters())
    loss, out = models.loss_of(name, model, ins, labels)
    loss.backward()
    ref = {
        "model": name,
        "opset": opset,
        "loss_kind": loss_kind or "",
        "output": out_name,
        "lr": lr,
        "batch_norm_training": train_mode,
        "inputs": {k: entry(v) for k, v in ins.items()},
        "loss": float(loss),
        "grads": {k: entry(p.grad) for k, p in params.items()},
        "weights": {k: entry(p) for k, p in params.items()},
    }
    if labels is not None:
        ref["labels"] = entry(labels)
        ref["out"] = entry(out)
    # 20 SGD steps on the same batch.
    model = models.build(name)
    model.train(train_mode)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.0)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss, _ = models.loss_of(name, model, ins, labels)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    ref["train_losses"] = losses
    with open(os.path.join(d, "ref.json"), "w") as f:
        json.dump(ref, f)
    print(f"{name}: opset {opset}, loss {ref['loss']:.6f}, "
          f"{len(params)} weights, step {STEPS} loss {losses[-1]:.6f}")


def malformed(work):
    """Damaged and unsupported files for the error tests, in DIR/bad/."""
    import onnx
    d = os.path.join(work, "bad")
    os.makedirs(d, exist_ok=True)
    bert = os.path.join(work, "bert", "model.onnx")
    data = open(bert, "rb").read()
    open(os.path.join(d, "truncated.onnx"), "wb").write(data[: len(data) // 2])
    open(os.path.join(d, "text.onnx"), "w").write("this is not a model\n")
    m = onnx.load(os.path.join(work, "gpt", "model.onnx"))
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 12
    onnx.save(m, os.path.join(d, "opset12.onnx"))
    m = onnx.load(bert)
    dim = m.graph.input[0].type.tensor_type.shape.dim[1]
    dim.ClearField("dim_value")
    dim.dim_param = "seq"
    onnx.save(m, os.path.join(d, "dynamic_seq.onnx"))
    m = onnx.load(bert)
    changed = 0
    for n in m.graph.node:
        if n.op_type == "Tanh" or (n.op_type == "Erf" and changed < 2):
            n.op_type = "OtherOp" if n.op_type == "Tanh" else "FancyOp"
            n.name = f"custom_{changed if n.op_type == 'FancyOp' else 2}"
            changed += n.op_type == "FancyOp"
    onnx.save(m, os.path.join(d, "unsupported_ops.onnx"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--only", default="")
    a = p.parse_args()
    torch.set_num_threads(1)
    names = a.only.split(",") if a.only else list(models.MODELS)
    for name in names:
        reference(name, a.work)
    if not a.only:
        malformed(a.work)
    print("PASS: onnx models exported")


if __name__ == "__main__":
    main()
