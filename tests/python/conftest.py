"""Fixtures of the alpa module's tests: the module comes from the build tree (PYTHONPATH,
set by ctest), models are built once per session."""
import pytest

import alpa


@pytest.fixture(scope="session")
def mlp():
    return alpa.load_model("mlp", "tiny")


@pytest.fixture(scope="session")
def gpt():
    return alpa.load_model("gpt", "tiny")
