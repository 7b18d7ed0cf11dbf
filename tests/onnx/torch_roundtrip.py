"""Weights written back as ONNX load into PyTorch with identical outputs.

For every test model, DIR/<name>/trained.onnx (written by onnx_test with 20 SGD steps of alpa's
training) is read with the onnx package, its initializers loaded into the PyTorch module by
name, and the module's loss on the reference batch compared with the loss alpa's importer
computed from the same file (roundtrip.json). Then the CLI: `alpa train --checkpoint-dir` and
`alpa export --format onnx` write a file whose weights load into the module the same way.
Usage: torch_roundtrip.py --work DIR --alpa BIN
"""
import argparse
import json
import os
import subprocess
import sys

import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402


def load_into(name, path):
    model = models.build(name)
    state = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
             for t in onnx.load(path).graph.initializer}
    params = dict(model.named_parameters())
    for k, p in params.items():
        assert k in state, f"{path}: no initializer for parameter {k}"
        assert tuple(state[k].shape) == tuple(p.shape), k
        with torch.no_grad():
            p.copy_(state[k])
    model.train(models.MODELS[name][3])
    return model


def module_loss(name, model):
    loss, _ = models.loss_of(name, model, models.inputs(name), models.labels_for(name))
    return float(loss)


def check_trained(name, work):
    d = os.path.join(work, name)
    rt = json.load(open(os.path.join(d, "roundtrip.json")))
    ref = json.load(open(os.path.join(d, "ref.json")))
    model = load_into(name, os.path.join(d, "trained.onnx"))
    loss, out = models.loss_of(name, model, models.inputs(name), models.labels_for(name))
    torch_loss = float(loss)
    out_name = ref["output"]
    if out_name in rt.get("outputs", {}):  # the module's output itself (an added loss)
        got = torch.tensor(rt["outputs"][out_name], dtype=torch.float64)
        want = out.detach().double().reshape(-1)
        rel_out = float((got - want).abs().max() / max(float(want.abs().max()), 1e-6))
        print(f"{name}: output '{out_name}' relative difference {rel_out:.1e}")
        assert rel_out < 1e-5, name
    rel = abs(torch_loss - rt["loss"]) / max(abs(rt["loss"]), 1e-6)
    print(f"{name}: trained weights, alpa {rt['loss']:.7f}, PyTorch {torch_loss:.7f} "
          f"(relative {rel:.1e}; untrained {ref['loss']:.5f})")
    assert rel < 1e-5, name
    assert torch_loss < ref["loss"], name


def check_cli(alpa, work):
    d = os.path.join(work, "cli")
    os.makedirs(d, exist_ok=True)
    src = os.path.join(work, "bert", "model.onnx")
    ck = os.path.join(d, "ck")
    out = os.path.join(d, "exported.onnx")
    subprocess.run([alpa, "train", "--model", src, "--batch", "4", "--optimizer", "sgd",
                    "--lr", "0.1", "--steps", "3", "--checkpoint-dir", ck], check=True,
                   stdout=subprocess.DEVNULL)
    r = subprocess.run([alpa, "export", "--format", "onnx", "--checkpoint", ck, "--model", src,
                        "--out", out, "--json"], check=True, capture_output=True, text=True)
    info = json.loads(r.stdout)
    assert info["step"] == 3, info
    before = {t.name: numpy_helper.to_array(t) for t in onnx.load(src).graph.initializer}
    after = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    assert before.keys() == after.keys()
    changed = sum(1 for k in before if before[k].dtype.kind == "f" and
                  (before[k] != after[k]).any())
    loss0 = module_loss("bert", load_into("bert", src))
    loss3 = module_loss("bert", load_into("bert", out))
    print(f"cli: alpa export --format onnx, {changed} of {len(before)} initializers trained; "
          f"PyTorch loss {loss0:.5f} from the file, {loss3:.5f} after 3 steps")
    assert changed >= 20
    assert loss3 != loss0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--alpa", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    for name in models.MODELS:
        check_trained(name, a.work)
    check_cli(a.alpa, a.work)
    print("PASS: onnx weights load into PyTorch")


if __name__ == "__main__":
    main()
