"""alpa.Trainer: steps with NumPy data, training with callbacks, weights in and out, and
sharded and pipelined runs against one device."""
import math

import numpy as np
import pytest

import alpa


def _run(model, steps, **kwargs):
    t = alpa.Trainer(model, seed=3, **kwargs)
    losses = [t.step(t.synthetic_batch(s)) for s in range(steps)]
    return t, losses


def _close(a, b, rel):
    for name in a:
        scale = np.abs(a[name]).max() + 1e-7
        assert np.abs(a[name] - b[name]).max() <= rel * scale + 5e-5 * (rel > 0), name


def test_one_device_learns_and_reports_progress(mlp):
    t = alpa.Trainer(mlp, optimizer="adamw", lr=1e-2)
    assert t.plan.devices == 1
    assert set(t.inputs) == {"x", "labels"}
    seen = []
    losses = t.train(30, callback=seen.append)
    assert len(losses) == 30 and all(math.isfinite(l) for l in losses)
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0]
    assert [p.step for p in seen] == list(range(1, 31))
    assert all(p.steps == 30 and p.seconds > 0 for p in seen)
    assert [p.loss for p in seen] == losses
    assert t.steps_done == 30
    # a callback returning False stops the run
    more = t.train(10, callback=lambda p: p.step < 33)
    assert len(more) == 3 and t.steps_done == 33
    assert "33 steps done" in repr(t)


def test_data_fn_and_step_take_numpy_batches(mlp):
    t = alpa.Trainer(mlp, seed=1)
    batch = t.synthetic_batch(0)
    assert batch["x"].dtype == np.float32 and batch["labels"].dtype == np.int32
    assert batch["x"].shape == t.inputs["x"][0]
    # the same data as float64 and int64 arrays, or lists: the same step
    a = alpa.Trainer(mlp, seed=1)
    b = alpa.Trainer(mlp, seed=1)
    la = a.step(batch)
    lb = b.step({"x": batch["x"].astype(np.float64), "labels": batch["labels"].tolist()})
    assert la == lb
    calls = []
    losses = a.train(3, data_fn=lambda s: calls.append(s) or batch)
    assert calls == [1, 2, 3] and len(losses) == 3


@pytest.mark.parametrize("where", [dict(mesh="2x2"), dict(mesh=(1, 2), manual="zero"),
                                   dict(devices=2, micro_batches=2)])
def test_sharded_and_pipelined_runs_equal_one_device(gpt, where):
    one, ref = _run(gpt, 3)
    many, got = _run(gpt, 3, **where)
    assert many.plan.devices == (4 if where.get("mesh") == "2x2" else 2)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    _close(many.weights(), one.weights(), 1e-4)


def test_weights_round_trip(mlp):
    a, _ = _run(mlp, 2)
    w = a.weights()
    assert set(w) == set(mlp.weights)
    assert all(w[n].shape == tuple(mlp.weights[n]) and w[n].dtype == np.float32 for n in w)
    state = a.optimizer_state()
    assert state and not set(state) & set(w)
    # weights into a fresh trainer on another mesh: the same loss on the same batch
    b = alpa.Trainer(mlp, mesh="1x2", seed=99)
    b.load_weights(w)
    _close(b.weights(), w, 0)
    batch = a.synthetic_batch(5)
    fresh = alpa.Trainer(mlp, seed=99)
    fresh.load_weights(w)
    assert b.step(batch) == pytest.approx(fresh.step(batch), rel=1e-5)
    # a partial load changes only what it names
    name = sorted(w)[0]
    c = alpa.Trainer(mlp, seed=7)
    before = c.weights()
    c.load_weights({name: np.zeros_like(w[name])}, strict=False)
    after = c.weights()
    assert not after[name].any()
    assert all(np.array_equal(after[n], before[n]) for n in w if n != name)


def test_bad_steps_raise(mlp):
    t = alpa.Trainer(mlp)
    batch = t.synthetic_batch(0)
    cases = [
        ({"x": batch["x"]}, "data input 'labels' is missing"),
        ({**batch, "lables": batch["labels"]}, "did you mean 'labels'"),
        ({**batch, "x": batch["x"][:, :3]}, "input 'x' has shape"),
        ({**batch, "labels": batch["labels"] + 0.5}, "whole numbers"),
        ({**batch, "x": np.full_like(batch["x"], np.nan)}, "finite"),
        ({**batch, "x": np.array(["a"] * batch["x"].size).reshape(batch["x"].shape)}, "numbers"),
        ({**batch, "labels": batch["labels"] + 1000}, "out of range"),
    ]
    for data, message in cases:
        with pytest.raises(alpa.Error) as info:
            t.step(data)
        assert message in str(info.value), (message, str(info.value))
    with pytest.raises(alpa.Error, match="expected a dict"):
        t.step([batch["x"], batch["labels"]])
    # the trainer still works after errors
    assert math.isfinite(t.step(batch))


def test_bad_weights_raise(mlp):
    t = alpa.Trainer(mlp)
    w = t.weights()
    name = [n for n in sorted(w) if w[n].ndim == 2][0]
    with pytest.raises(alpa.Error) as info:
        t.load_weights({**w, name + "x": w[name]})
    assert "is not a weight" in info.value.message and name in info.value.hint
    with pytest.raises(alpa.Error, match="has shape"):
        t.load_weights({**w, name: w[name].ravel()})
    missing = dict(w)
    del missing[name]
    with pytest.raises(alpa.Error) as info:
        t.load_weights(missing)
    assert f"weight '{name}' is missing" in info.value.message
    assert "strict=False" in info.value.hint


@pytest.mark.parametrize("kwargs, message", [
    (dict(mesh="2x2", devices=4), "not both"),
    (dict(mesh="3x3"), "9 devices do not fill whole hosts"),
    (dict(devices=1000), "virtual devices"),
    (dict(optimizer="lion"), "unknown optimizer"),
    (dict(seed=-1), "seed must be >= 0"),
    (dict(momentum=2.0), "momentum"),
])
def test_bad_trainers_raise(mlp, kwargs, message):
    with pytest.raises(alpa.Error) as info:
        alpa.Trainer(mlp, **kwargs)
    assert message in str(info.value)


def test_bad_train_calls_raise(mlp):
    t = alpa.Trainer(mlp)
    with pytest.raises(alpa.Error, match="steps must be >= 1"):
        t.train(0)
    with pytest.raises(alpa.Error, match="input 'x' has shape"):
        t.train(1, data_fn=lambda s: {"x": np.zeros((1, 1)), "labels": np.zeros(1)})
    with pytest.raises(ZeroDivisionError):  # the caller's own errors pass through
        t.train(1, callback=lambda p: 1 / 0)
