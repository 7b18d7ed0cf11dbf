"""ONNX models from PyTorch through the Python module: loading, training against PyTorch,
weights back as arrays (by PyTorch's parameter names) and as an ONNX file."""
import copy

import numpy as np
import pytest
import torch

import alpa


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 6))
    path = tmp_path_factory.mktemp("onnx") / "mlp.onnx"
    torch.onnx.export(net, (torch.zeros(8, 12),), str(path), input_names=["x"],
                      output_names=["logits"], opset_version=13)
    return net, path


def _batch(step):
    rng = np.random.default_rng(step)
    return {"x": rng.standard_normal((8, 12)).astype(np.float32),
            "labels": rng.integers(0, 6, size=8).astype(np.int32)}


def _torch_losses(net, steps, lr):
    net = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    losses = []
    for s in range(steps):
        b = _batch(s)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(torch.from_numpy(b["x"])),
                                                 torch.from_numpy(b["labels"]).long())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return net, losses


def test_load(exported):
    net, path = exported
    model = alpa.load_model(path, loss="cross_entropy")
    assert model.family == "onnx" and "(onnx)" in repr(model)
    assert model.inputs == {"x": ((8, 12), "f32"), "labels": ((8,), "i32")}
    names = model.onnx_initializers
    assert sorted(names.values()) == sorted(dict(net.named_parameters()))
    assert model.parameters == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("where", [{}, {"mesh": "2x2"}, {"devices": 2}])
def test_training_tracks_pytorch_and_weights_go_back(exported, where):
    net, path = exported
    model = alpa.load_model(path, loss="cross_entropy")
    trainer = alpa.Trainer(model, optimizer="sgd", lr=0.1, momentum=0.0, **where)
    # it starts from the file's weights
    names = model.onnx_initializers
    state = net.state_dict()
    for w, v in trainer.weights().items():
        np.testing.assert_array_equal(v, state[names[w]].numpy())
    losses = trainer.train(10, data_fn=_batch)
    trained, ref = _torch_losses(net, 10, 0.1)
    np.testing.assert_allclose(losses, ref, rtol=1e-5)
    back = copy.deepcopy(net)
    back.load_state_dict({names[w]: torch.from_numpy(v) for w, v in trainer.weights().items()})
    x = torch.from_numpy(_batch(99)["x"])
    with torch.no_grad():
        np.testing.assert_allclose(back(x).numpy(), trained(x).numpy(), rtol=1e-4, atol=1e-5)


def test_export_onnx_round_trip(exported, tmp_path):
    _, path = exported
    model = alpa.load_model(path, loss="cross_entropy")
    trainer = alpa.Trainer(model, optimizer="sgd", lr=0.1)
    trainer.train(3, data_fn=_batch)
    out = tmp_path / "trained.onnx"
    trainer.export_onnx(out)
    again = alpa.Trainer(alpa.load_model(out, loss="cross_entropy"))
    for w, v in trainer.weights().items():
        np.testing.assert_array_equal(again.weights()[w], v)
    assert again.step(_batch(3)) == pytest.approx(trainer.step(_batch(3)), rel=1e-6)


def test_onnx_errors(exported, tmp_path, mlp):
    _, path = exported
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(path.read_bytes()[:40])
    with pytest.raises(alpa.Error) as info:
        alpa.load_model(bad)
    assert "truncated.onnx" in str(info.value)
    with pytest.raises(alpa.Error) as info:
        alpa.load_model(path, loss="hinge")
    assert "hinge" in str(info.value)
    with pytest.raises(alpa.Error, match="not loaded from an ONNX file"):
        alpa.Trainer(mlp).export_onnx(tmp_path / "x.onnx")
