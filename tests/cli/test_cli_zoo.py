"""``membra models`` / ``membra datasets`` list the registries."""

from typer.testing import CliRunner

from membra.cli import app
from membra.data import dataset_entries
from membra.models import list_models


def test_models_lists_every_model_with_a_description():
    res = CliRunner().invoke(app, ["models", "--options"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    for name in list_models():
        line = next(ln for ln in lines if ln.startswith(name + " "))
        assert len(line.split()) > 3
    assert "init_potential" not in res.output and "options: hidden=(128, 128)" in res.output


def test_datasets_marks_builtin_and_local():
    res = CliRunner().invoke(app, ["datasets"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    for e in dataset_entries():
        line = next(ln for ln in lines if ln.startswith(e.name + " "))
        assert ("built-in" in line) == e.builtin and ("root=..." in line) == (not e.builtin)
