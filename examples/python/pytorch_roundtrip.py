#!/usr/bin/python3
"""Bring a PyTorch model to alpa and back.

1. Export a PyTorch MLP classifier (torch.nn.Sequential of Linear and ReLU layers with a
   softmax cross-entropy loss) as an alpa model file (text IR), with its initial weights.
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
import sys
import tempfile

import numpy as np
import torch

import alpa


def export_mlp(module: torch.nn.Sequential, batch: int, path: str) -> dict:
    """Writes `module` (Linear / ReLU layers) with a mean softmax cross-entropy loss as a
    text IR model file; returns the alpa weights of the module's current parameters."""
    lines, weights, value = [], {}, "%x"
    n_in = module[0].in_features
    lines.append(f"  %x = parameter() {{role=input, init=normal, scale=1}} : f32[{batch},{n_in}]")
    width, t = n_in, 0
    for i, layer in enumerate(module):
        if isinstance(layer, torch.nn.Linear):
            w, b = f"l{i}.w", f"l{i}.b"
            n = layer.out_features
            scale = 1.0 / np.sqrt(width)
            lines += [
                f"  %{w} = parameter() {{init=normal, scale={scale}}} : f32[{width},{n}]",
                f"  %{b} = parameter() : f32[{n}]",
                f"  %t{t} = dot_general({value}, %{w}) {{lhs_contract=[1], rhs_contract=[0]}}"
                f" : f32[{batch},{n}]",
                f"  %t{t + 1} = broadcast(%{b}) {{dims=[1]}} : f32[{batch},{n}]",
                f"  %t{t + 2} = add(%t{t}, %t{t + 1}) : f32[{batch},{n}]",
            ]
            weights[w] = layer.weight.detach().numpy().T.copy()   # torch keeps [out, in]
            weights[b] = layer.bias.detach().numpy().copy()
            value, width, t = f"%t{t + 2}", n, t + 3
        elif isinstance(layer, torch.nn.ReLU):
            lines += [f"  %t{t} = constant() : f32[{batch},{width}]",
                      f"  %t{t + 1} = max({value}, %t{t}) : f32[{batch},{width}]"]
            value, t = f"%t{t + 1}", t + 2
        else:
            raise ValueError(f"layer {i}: {type(layer).__name__} is not exported here")
    classes = width
    shape = f"f32[{batch},{classes}]"
    lines += [  # loss = mean over the batch of logsumexp(logits) - logits[label]
        f"  %labels = parameter() {{role=input, init=randint, scale={classes}}} : i32[{batch}]",
        f"  %m = reduce_max({value}) {{dims=[1]}} : f32[{batch}]",
        f"  %ms = stop_gradient(%m) : f32[{batch}]",
        f"  %mb = broadcast(%ms) {{dims=[0]}} : {shape}",
        f"  %z = sub({value}, %mb) : {shape}",
        f"  %e = exp(%z) : {shape}",
        f"  %se = reduce_sum(%e) {{dims=[1]}} : f32[{batch}]",
        f"  %lse = log(%se) : f32[{batch}]",
        f"  %lseb = broadcast(%lse) {{dims=[0]}} : {shape}",
        f"  %logp = sub(%z, %lseb) : {shape}",
        f"  %cls = iota() {{dim=1}} : i32[{batch},{classes}]",
        f"  %lb = broadcast(%labels) {{dims=[0]}} : i32[{batch},{classes}]",
        f"  %hit = compare(%cls, %lb) : pred[{batch},{classes}]",
        f"  %onehot = convert(%hit) : {shape}",
        f"  %picked = mul(%onehot, %logp) : {shape}",
        f"  %rows = reduce_sum(%picked) {{dims=[1]}} : f32[{batch}]",
        f"  %total = reduce_sum(%rows) {{dims=[0]}} : f32[]",
        f"  %inv = constant() {{values=[{1.0 / batch}]}} : f32[]",
        f"  %mean = mul(%total, %inv) : f32[]",
        f"  %loss = neg(%mean) : f32[]",
        "  output loss = %loss",
    ]
    with open(path, "w") as f:
        f.write("graph torch_mlp {\n" + "\n".join(lines) + "\n}\n")
    return weights


def load_into_torch(module: torch.nn.Sequential, weights: dict) -> None:
    state = {}
    for i, layer in enumerate(module):
        if isinstance(layer, torch.nn.Linear):
            state[f"{i}.weight"] = torch.from_numpy(weights[f"l{i}.w"].T.copy())
            state[f"{i}.bias"] = torch.from_numpy(weights[f"l{i}.b"])
    module.load_state_dict(state)


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
    path = os.path.join(workdir, "torch_mlp.ir")
    initial = export_mlp(net, batch, path)
    model = alpa.load_model(path)
    print(f"1. exported: {model}")

    # 2. Plan for 64 GPUs.
    mesh_plan = alpa.plan(model, cluster="p3.16xlarge", mesh="8x8")
    print(f"2. {mesh_plan}")
    for name in initial:
        print(f"     {name:6s} {str(model.weights[name]):10s} {mesh_plan.layouts['%' + name]}")
    print(f"   simulated: {alpa.simulate(mesh_plan)}")
    pipeline = alpa.plan(model, cluster="p3.16xlarge", devices=64)
    print(f"   {pipeline}")
    for stage in pipeline.stages:
        print(f"     layers {stage['layers']} on a {stage['mesh'][0]}x{stage['mesh'][1]} mesh "
              f"from device {stage['first_device']}")

    # 3. Train on 4 virtual devices, and the same in PyTorch.
    trainer = alpa.Trainer(model, mesh="2x2", optimizer="adamw", lr=args.lr)
    trainer.load_weights(initial)
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
    load_into_torch(net, trainer.weights())
    x = torch.from_numpy(data[0]["x"])
    with torch.no_grad():
        diff = (net(x) - reference(x)).abs().max().item()
        scale = reference(x).abs().max().item()
    print(f"4. PyTorch module with alpa's weights: outputs within {diff:.2e} of the "
          f"PyTorch-trained copy (max |output| {scale:.2f})")

    ok = worst < 1e-3 and diff < 1e-3 * max(1.0, scale) and alpa_losses[-1] < alpa_losses[0]
    print("ok" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
