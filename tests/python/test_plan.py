"""alpa.plan, alpa.Plan, alpa.simulate and alpa.SimReport."""
import json

import pytest

import alpa


def test_mesh_plan(gpt):
    plan = alpa.plan(gpt, cluster="p3.16xlarge", mesh="2x4")
    assert plan.kind == "mesh"
    assert plan.mesh == (2, 4) and plan.devices == 8
    assert plan.cluster == "p3.16xlarge" and plan.model == "gpt-tiny" and plan.source == "auto"
    assert plan.predicted_step_time_s > 0
    assert plan.predicted_step_time_s == pytest.approx(
        plan.predicted_compute_s + plan.predicted_communication_s)
    assert plan.predicted_peak_memory_bytes > 0
    assert len(plan.stages) == 1 and plan.stages[0]["devices"] == 8
    layouts = plan.layouts
    assert "%tokens" in layouts
    # every layout is in the paper's notation: R or S<axes> per dim, +P<axes> for partial
    # sums, () for a scalar
    assert all(set(spec) <= set("RS01+P()") for spec in layouts.values())
    assert layouts["%tokens"] in ("S0R", "S1R", "S01R", "RR", "S0S1", "S1S0", "RS0", "RS1")
    # a plan over 8 devices splits something
    assert any("S" in spec for spec in layouts.values())
    assert "mesh 2x4" in repr(plan) and "p3.16xlarge" in repr(plan)
    doc = json.loads(plan.to_json())
    assert doc["format"] == "alpa-plan/1"
    assert doc["mesh"] == [2, 4]
    assert doc["layouts"] == layouts
    program = json.loads(plan.program_json())
    assert program["format"] == "alpa-program/1"
    assert plan.collectives > 0


def test_tuple_mesh_and_manual_plans(mlp):
    plan = alpa.plan(mlp, mesh=(1, 4), manual="data-parallel")
    assert plan.mesh == (1, 4) and plan.source == "data-parallel"
    weights = [n for n in plan.layouts if n.startswith("%l0.w") or n.startswith("%out.w")]
    assert weights and all(plan.layouts[w] == "RR" for w in weights)


def test_saved_plan_is_used_again(gpt, tmp_path):
    plan = alpa.plan(gpt, mesh="2x2")
    path = tmp_path / "plan.json"
    plan.save(str(path))
    again = alpa.plan(gpt, mesh="2x2", manual=path)
    assert again.source == str(path)
    assert again.layouts == plan.layouts
    assert again.predicted_step_time_s == pytest.approx(plan.predicted_step_time_s, rel=1e-6)


def test_pipeline_plan(gpt):
    plan = alpa.plan(gpt, cluster="p3.16xlarge", devices=4, micro_batches=2, schedule="gpipe")
    assert plan.kind == "pipeline" and plan.mesh is None
    assert plan.devices == 4 and plan.micro_batches == 2 and plan.schedule == "gpipe"
    stages = plan.stages
    assert sum(s["devices"] for s in stages) == 4
    devices = sorted(d for s in stages for d in range(s["first_device"],
                                                    s["first_device"] + s["devices"]))
    assert devices == [0, 1, 2, 3]
    layers = [s["layers"] for s in stages]
    assert layers[0][0] == 0
    assert all(a[1] + 1 == b[0] for a, b in zip(layers, layers[1:]))
    assert "pipeline of" in repr(plan)
    doc = json.loads(plan.to_json())
    assert len(doc["stages"]) == len(stages)


def test_simulate(gpt):
    plan = alpa.plan(gpt, cluster="p3.16xlarge", mesh="1x2")
    report = alpa.simulate(plan)
    assert isinstance(report, alpa.SimReport)
    assert report.step_time_s > 0 and report.instructions > 0
    assert report.peak_memory_bytes > 0
    assert len(report.stages) == 1 and report.stages[0]["devices"] == 2
    assert "per step" in repr(report)
    # the same program on a faster cluster is predicted faster
    faster = alpa.simulate(plan, cluster="dgx-h100")
    assert faster.step_time_s < report.step_time_s
    # a model is planned first
    direct = alpa.simulate(gpt, cluster="p3.16xlarge", mesh="1x2")
    assert direct.step_time_s == pytest.approx(report.step_time_s, rel=1e-6)
    pipe = alpa.simulate(gpt, devices=2, micro_batches=2)
    assert len(pipe.stages) >= 1 and 0 <= pipe.bubble_fraction < 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(mesh="2x2", devices=4), "either mesh= (one mesh) or devices="),
    (dict(mesh="2y2"), "2y2"),
    (dict(mesh=(2, 2, 2)), "pair of integers"),
    (dict(cluster="no-such-cluster"), "no-such-cluster"),
    (dict(devices=0), "devices must be >= 1"),
    (dict(devices=2, schedule="zigzag"), "unknown schedule"),
    (dict(mesh="1x2", optimizer="lion"), "unknown optimizer"),
    (dict(mesh="1x2", lr=-1.0), "lr must be a positive number"),
    (dict(mesh="1x2", manual="no-such-plan.json"), "no-such-plan.json"),
])
def test_bad_plans_raise(gpt, kwargs, message):
    with pytest.raises(alpa.Error) as info:
        alpa.plan(gpt, **kwargs)
    assert message in str(info.value)


def test_bad_simulations_raise(gpt):
    plan = alpa.plan(gpt, mesh="1x2")
    with pytest.raises(alpa.Error, match="apply to a model, not a plan"):
        alpa.simulate(plan, mesh="2x2")
    with pytest.raises(alpa.Error, match="expected an alpa.Model or alpa.Plan"):
        alpa.simulate("gpt")
    with pytest.raises(alpa.Error, match="no-such-cluster"):
        alpa.simulate(plan, cluster="no-such-cluster")
