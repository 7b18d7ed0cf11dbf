"""alpa.load_model, alpa.Model and alpa.Error."""
import pathlib
import re

import pytest

import alpa


def test_error_is_an_exception_with_message_and_hint():
    assert issubclass(alpa.Error, Exception)
    with pytest.raises(alpa.Error) as info:
        alpa.load_model("no-such-model")
    e = info.value
    assert "unknown model 'no-such-model'" in e.message
    assert "gpt" in e.hint and "text IR" in e.hint
    assert e.code == "not_found"
    assert str(e) == e.message + "\nhint: " + e.hint


def test_builtin_model(gpt):
    assert gpt.name == "gpt-tiny"
    assert gpt.family == "gpt"
    assert gpt.batch > 0
    assert set(gpt.inputs) == {"tokens", "labels"}
    shape, dtype = gpt.inputs["tokens"]
    assert dtype == "i32" and shape[0] == gpt.batch
    assert sum(_count(s) for s in gpt.weights.values()) == gpt.parameters
    assert gpt.flops > 0
    assert "gpt-tiny" in repr(gpt) and "parameters" in repr(gpt)


def test_overrides_change_the_model():
    small = alpa.load_model("gpt", "tiny", batch=4, seq=16, layers=1)
    assert small.batch == 4
    assert small.inputs["tokens"][0] == (4, 16)
    bigger = alpa.load_model("gpt", "tiny", layers=3)
    assert bigger.parameters > small.parameters
    bf16 = alpa.load_model("mlp", "tiny", dtype="bf16")
    assert bf16.parameters == alpa.load_model("mlp", "tiny").parameters


@pytest.mark.parametrize("kwargs, message", [
    (dict(name_or_path="gpt", size="huge"), "huge"),
    (dict(name_or_path="mlp", batch=0), "batch must be >= 1"),
    (dict(name_or_path="mlp", dtype="f64"), "unknown dtype 'f64'"),
    (dict(name_or_path="mlp", seq=8), "do not apply to the MLP"),
    (dict(name_or_path="mlp", batch=2.5), "must be an integer"),
    (dict(name_or_path=42), "expected a model name or a path"),
])
def test_bad_models_raise(kwargs, message):
    with pytest.raises(alpa.Error) as info:
        alpa.load_model(**kwargs)
    assert message in str(info.value)


def test_text_ir_file_round_trip(mlp, tmp_path):
    path = tmp_path / "mlp.ir"
    path.write_text(mlp.text())
    loaded = alpa.load_model(path)  # a PathLike
    assert loaded.family == "file"
    assert loaded.name == str(path)
    assert loaded.weights == mlp.weights
    assert loaded.inputs == mlp.inputs
    assert loaded.batch == mlp.batch
    assert alpa.load_model(str(path)).parameters == mlp.parameters
    assert mlp.text().startswith("graph ") and "(batch=8) {" in mlp.text().splitlines()[0]
    half = alpa.load_model(path, batch=4)
    assert half.batch == 4 and half.parameters == mlp.parameters
    assert all(shape[0] == 4 for shape, _ in half.inputs.values())


def test_bad_files_name_the_file_and_the_problem(mlp, tmp_path):
    no_loss = tmp_path / "no_loss.ir"
    no_loss.write_text(mlp.text().replace("output loss", "output not_loss"))
    with pytest.raises(alpa.Error) as info:
        alpa.load_model(no_loss)
    assert str(no_loss) in info.value.message and "loss" in info.value.message
    assert "output loss" in info.value.hint
    garbage = tmp_path / "garbage.ir"
    garbage.write_text("graph g {\n  %x = nonsense_op() : f32[2]\n}\n")
    with pytest.raises(alpa.Error) as info:
        alpa.load_model(garbage)
    assert "garbage.ir" in str(info.value)
    with pytest.raises(alpa.Error) as info:
        alpa.load_model(tmp_path / "missing.ir")
    assert "missing.ir" in info.value.message
    undeclared = tmp_path / "undeclared.ir"
    fixed = mlp.text().replace("(batch=8)", "", 1).replace("1/batch", "0.125")
    undeclared.write_text(re.sub(r"\bbatch\b", "8", fixed))
    assert alpa.load_model(undeclared).parameters == mlp.parameters
    with pytest.raises(alpa.Error) as info:
        alpa.load_model(undeclared, batch=4)
    assert "declares no batch dimension" in info.value.message
    assert "graph NAME(batch=N)" in info.value.hint


def _count(shape):
    n = 1
    for d in shape:
        n *= d
    return n
