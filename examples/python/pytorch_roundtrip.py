#!/usr/bin/python3
"""Bring a PyTorch model to alpa and back.

1. Export a PyTorch MLP classifier with torch.onnx.export and load it (its initializers are
   the initial weights; a softmax cross-entropy loss is added on its logits).
2. Plan its training step for 64 GPUs (8 p3.16xlarge hosts: one 8x8 mesh, and a pipeline).
3. Train it on 4 virtual devices (a 2x2 mesh of threads in this process) from PyTorch's
   initial weights, and train the same model in PyTorch on the same data: the losses agree.
4. Load the trained weights back into the PyTorch module: its outputs equal those of the
   PyTorch-trained copy.

Run from the repository root after building (the suite runs it as python.example):
    PYTHONPATH=build/release/python /usr/bin/python3 examples/python/pytorch_roundtrip.py
"""

import argparse
import copy
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

import alpa


def load_into_torch(module: torch.nn.Module, model: alpa.Model, weights: dict) -> None:
    """Loads alpa's weights into the module by the ONNX initializer (parameter) names."""
    names = model.onnx_initializers  # {alpa weight: initializer name = PyTorch parameter}
    module.load_state_dict({names[w]: torch.from_numpy(v) for w, v in weights.items()})


def make_data(steps: int, batch: int, n_in: int, classes: int):
    """A learnable task: the label is the argmax of a fixed random linear map of x."""
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((n_in, classes)).astype(np.float32)
    data = []
    for _ in range(steps):
        x = rng.standard_normal((batch, n_in)).astype(np.float32)
        data.append({"x": x, "labels": np.argmax(x @ teacher, axis=1).astype(np.int32)})
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()
    torch.manual_seed(0)
    batch, n_in, hidden, classes = 32, 16, 64, 8
    net = torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, classes))
    reference = copy.deepcopy(net)  # trained by PyTorch, for comparison

    # 1. Export.
    workdir = tempfile.mkdtemp(prefix="alpa-example-")
    path = os.path.join(workdir, "mlp.onnx")
    torch.onnx.export(net, (torch.zeros(batch, n_in),), path, input_names=["x"],
                      output_names=["logits"], opset_version=13)
    model = alpa.load_model(path, loss="cross_entropy")
    print(f"1. exported: {model}")
    print(f"   inputs {model.inputs}")

    # 2. Plan for 64 GPUs.
    mesh_plan = alpa.plan(model, cluster="p3.16xlarge", mesh="8x8")
    print(f"2. {mesh_plan}")
    for name, shape in model.weights.items():
        print(f"     {name:12s} {str(shape):10s} {mesh_plan.layouts['%' + name]}")
    print(f"   simulated: {alpa.simulate(mesh_plan)}")
    pipeline = alpa.plan(model, cluster="p3.16xlarge", devices=64)
    print(f"   {pipeline}")
    for stage in pipeline.stages:
        print(f"     layers {stage['layers']} on a {stage['mesh'][0]}x{stage['mesh'][1]} mesh "
              f"from device {stage['first_device']}")

    # 3. Train on 4 virtual devices, and the same in PyTorch.
    trainer = alpa.Trainer(model, mesh="2x2", optimizer="adamw", lr=args.lr)
    print(f"3. {trainer}")
    data = make_data(args.steps, batch, n_in, classes)
    alpa_losses = trainer.train(
        args.steps, data_fn=lambda step: data[step],
        callback=lambda p: print(f"     step {p.step:3d}/{p.steps}  loss {p.loss:.5f}")
        if p.step % 5 == 0 or p.step == 1 else None)
    optimizer = torch.optim.Adam(reference.parameters(), lr=args.lr)
    torch_losses = []
    for batch_data in data:
        optimizer.zero_grad()
        logits = reference(torch.from_numpy(batch_data["x"]))
        loss = torch.nn.functional.cross_entropy(logits,
                                                 torch.from_numpy(batch_data["labels"]).long())
        loss.backward()
        optimizer.step()
        torch_losses.append(loss.item())
    worst = max(abs(a - t) / abs(t) for a, t in zip(alpa_losses, torch_losses))
    print(f"   losses: alpa {alpa_losses[0]:.4f} -> {alpa_losses[-1]:.4f}, "
          f"PyTorch {torch_losses[0]:.4f} -> {torch_losses[-1]:.4f} "
          f"(largest relative difference {worst:.2e})")

    # 4. Back into PyTorch.
    load_into_torch(net, model, trainer.weights())
    trained_path = os.path.join(workdir, "mlp_trained.onnx")
    trainer.export_onnx(trained_path)  # the same graph with the trained initializers
    x = torch.from_numpy(data[0]["x"])
    with torch.no_grad():
        diff = (net(x) - reference(x)).abs().max().item()
        scale = reference(x).abs().max().item()
    print(f"4. PyTorch module with alpa's weights: outputs within {diff:.2e} of the "
          f"PyTorch-trained copy (max |output| {scale:.2f}); also written to {trained_path}")
    again = alpa.Trainer(alpa.load_model(trained_path, loss="cross_entropy"))
    same = all(np.array_equal(again.weights()[k], v) for k, v in trainer.weights().items())
    print(f"   the written file starts a new Trainer from the trained weights: {same}")

    ok = (worst < 1e-3 and diff < 1e-3 * max(1.0, scale) and same and
          alpa_losses[-1] < alpa_losses[0])
    shutil.rmtree(workdir)
    print("ok" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
