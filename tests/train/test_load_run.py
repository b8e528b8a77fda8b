"""``membra.load_run``: one public loader for every run folder, without building the dataset.

Families: custom models of several shapes (trained with ``fit(cfg, model=...)``), zoo models
on real built-in data, old runs without the recorded shapes, every checkpoint of a run, tampered
bytes and forged metadata (valid digest), and the CLI verbs that load runs.
"""

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import _tiny
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import membra
from membra.cli import app
from membra.nn import LIF
from membra.train import checkpoint as ck
from membra.train import engine, fit

DIGEST_KEY = "membra_file_sha256"


cfg = _tiny.config


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


class Narrow(nn.Module):
    """A custom model whose parameter names differ from the config's model."""

    def __init__(self, width: int = 5):
        super().__init__()
        self.inp = nn.Linear(8, width)
        self.lif = LIF(shape=(width,), init_potential="learnable")
        self.out = nn.Linear(width, 3)

    def forward(self, x):
        return self.out(self.lif(self.inp(x)))


class Deep(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(8, 7), nn.Linear(7, 6)])
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        for b in self.blocks:
            x = torch.relu(b(x))
        return self.head(x)


CUSTOM = {"narrow5": lambda: Narrow(5), "narrow11": lambda: Narrow(11), "deep": Deep,
          "sequential": lambda: nn.Sequential(nn.Linear(8, 9), nn.Tanh(), nn.Linear(9, 3))}


def _no_data(*_a, **_k):
    raise AssertionError("load_run built the dataset")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``zoo``: a run of the config's model; one run per custom model of CUSTOM."""
    base = tmp_path_factory.mktemp("load_run")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        _tiny.patch(mp)
        fit(cfg("train.epochs=2"), run_dir=base / "zoo")
        out["zoo"] = base / "zoo"
        for name, make in CUSTOM.items():
            torch.manual_seed(1)
            model = make()
            fit(cfg("train.epochs=1"), run_dir=base / name, model=model)
            out[name] = (base / name, model)
    return out


def _x(seed=0, T=3, B=4):
    return torch.rand(T, B, 8, generator=torch.Generator().manual_seed(seed))


# ---- 1. custom models: a clear message, and the module passed back ---------------------------
@pytest.mark.parametrize("name", list(CUSTOM))
def test_custom_model_run_names_its_class_and_how_to_load_it(runs, tiny, name):
    run, model = runs[name]
    cls = type(model).__name__
    with pytest.raises(ValueError, match=rf"{cls}.*load_run\(.*model="):
        membra.load_run(run)
    with pytest.raises(ValueError, match=cls):
        engine.evaluate_run(run, show=False)
    for verb in (("eval", run), ("export", "nir", run, "--out", run / "m.nir")):
        res = cli(*verb)
        assert res.exit_code == 2, res.output
        err = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert len(err) == 1 and cls in err[0] and "does not match" not in err[0], res.output


@pytest.mark.parametrize("name", list(CUSTOM))
def test_custom_model_passed_back_gets_the_trained_weights(runs, tiny, monkeypatch, name):
    run, trained = runs[name]
    monkeypatch.setattr(engine, "build_datasets", _no_data)
    torch.manual_seed(99)  # a fresh module with other initial weights
    r = membra.load_run(run, model=CUSTOM[name]())
    assert r.model_name == type(trained).__name__
    assert r.meta["model_info"]["custom"]["class"] == type(trained).__name__
    assert r.meta["model_info"]["custom"]["module"] == type(trained).__module__
    assert not r.model.training
    x = _x()
    with torch.no_grad():
        assert torch.equal(r.model(x), trained.eval()(x))


# ---- 2. zoo runs: rebuilt from the recorded shapes, the dataset is never built ---------------
def test_load_run_does_not_build_the_dataset(runs, tiny, monkeypatch):
    monkeypatch.setattr(engine, "build_datasets", _no_data)
    r = membra.load_run(runs["zoo"])
    assert (r.in_shape, r.num_classes) == ((8,), 3)
    assert r.model_name == r.config.model.name == "tiny"
    assert r.meta["epoch"] == 2 and r.checkpoint.name == "epoch_0002.safetensors"
    tensors, _ = ck.load_checkpoint(r.checkpoint)
    for k, v in r.model.state_dict().items():
        assert torch.equal(v, tensors[f"model.{k}"]), k


@pytest.mark.parametrize("epoch", [1, 2])
def test_checkpoint_argument_picks_that_checkpoint(runs, tiny, epoch):
    run = runs["zoo"]
    path = run / "checkpoints" / f"epoch_{epoch:04d}.safetensors"
    if not path.exists():
        pytest.skip("pruned")
    r = membra.load_run(run, checkpoint=path)
    assert r.meta["epoch"] == epoch and r.checkpoint == path
    tensors, _ = ck.load_checkpoint(path)
    assert torch.equal(r.model.state_dict()["0.weight"], tensors["model.0.weight"])


@pytest.mark.parametrize("model,options,data_options", [
    ("mlp", {"hidden": [12]}, {}),
    ("mlp", {"hidden": [7, 5]}, {}),
    ("cnn", {"channels": [3], "hidden": 6}, {"flatten": False}),
])
def test_zoo_run_on_real_data_rebuilds_without_data(tmp_path, monkeypatch, model, options,
                                                     data_options):
    pytest.importorskip("sklearn")
    out = _tiny.fit_digits(tmp_path / "z", "data.batch_size=64", f"model.name={model}",
                           *(f"model.options.{k}={json.dumps(v)}" for k, v in options.items()),
                           *(f"data.options.{k}={json.dumps(v)}" for k, v in data_options.items()))
    import membra.data

    monkeypatch.setattr(membra.data, "get_dataset", _no_data)
    r = membra.load_run(tmp_path / "z")
    shape = (64,) if not data_options else (1, 8, 8)
    assert (r.in_shape, r.num_classes) == (shape, 10)
    monkeypatch.undo()
    ev = engine.evaluate_run(tmp_path / "z", show=False, device="cpu")
    assert ev["test_acc"] == out["test_acc"]


# ---- 3. old runs (no recorded shapes) still load, with a note -------------------------------
def test_old_run_without_model_info_falls_back_to_the_dataset(runs, tiny, tmp_path):
    import shutil

    run = Path(shutil.copytree(runs["zoo"], tmp_path / "old"))
    latest = ck.resolve_checkpoint(run)
    _tiny.reseal(latest, lambda m: m.pop("model_info", None))
    with pytest.warns(UserWarning, match="older membra"):
        r = membra.load_run(run)
    assert (r.in_shape, r.num_classes) == ((8,), 3)
    assert r.meta.get("model_info") is None


@pytest.mark.parametrize("verb", [("eval",), ("export", "nir")])
def test_old_run_note_is_one_line_in_the_cli(runs, tiny, tmp_path, verb):
    import shutil

    if verb[0] == "export":
        pytest.importorskip("nir")
    run = Path(shutil.copytree(runs["zoo"], tmp_path / "old"))
    _tiny.reseal(ck.resolve_checkpoint(run), lambda m: m.pop("model_info", None))
    extra = ("--out", tmp_path / "m.nir") if verb[0] == "export" else ()
    res = cli(*verb, run, *extra)
    assert res.exit_code == 0, res.output
    notes = [ln for ln in res.output.splitlines() if "older membra" in ln]
    assert len(notes) == 1 and notes[0].startswith("note: "), res.output
    assert "UserWarning" not in res.output and "load_run(" not in res.output, res.output


# ---- 4. integrity: the guarantees of docs/training.md hold for load_run -----------------------
@pytest.mark.parametrize("seed", range(6))
def test_a_flipped_byte_anywhere_is_refused(runs, tiny, tmp_path, seed):
    import shutil

    run = Path(shutil.copytree(runs["zoo"], tmp_path / "t"))
    path = ck.resolve_checkpoint(run)
    raw = bytearray(path.read_bytes())
    i = random.Random(seed).randrange(len(raw))
    raw[i] ^= 0x01 << random.Random(seed + 100).randrange(8)
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupted|not a membra|not valid|header"):
        membra.load_run(run)


@pytest.mark.parametrize("bad", [
    {"in_shape": [8, -1], "num_classes": 3, "custom": None},
    {"in_shape": [], "num_classes": 3, "custom": None},
    {"in_shape": [8], "num_classes": 0, "custom": None},
    {"in_shape": [8], "num_classes": True, "custom": None},
    {"in_shape": "8", "num_classes": 3, "custom": None},
    {"in_shape": [8], "num_classes": 3, "custom": "Narrow"},
    {"in_shape": [8], "num_classes": 3, "custom": {"class": 1, "module": "m"}},
    {"in_shape": [8], "num_classes": 3},
    {"in_shape": [8.0], "num_classes": 3, "custom": None},
    [8, 3],
])
def test_forged_model_info_is_refused_by_name(runs, tiny, tmp_path, bad):
    """Metadata written with a valid digest but outside the schema names ``model_info``."""
    import shutil

    run = Path(shutil.copytree(runs["zoo"], tmp_path / "f"))
    _tiny.reseal(ck.resolve_checkpoint(run), lambda m: m.update(model_info=bad))
    with pytest.raises(ValueError, match="model_info"):
        membra.load_run(run)


def test_latest_pointing_outside_is_refused(runs, tiny, tmp_path):
    import shutil

    run = Path(shutil.copytree(runs["zoo"], tmp_path / "l"))
    other = Path(shutil.copytree(runs["narrow5"][0], tmp_path / "o"))
    target = ck.resolve_checkpoint(other)
    (run / "checkpoints" / "latest").write_text(f"../../o/checkpoints/{target.name}\n")
    with pytest.raises(ValueError, match="latest"):
        membra.load_run(run)


def test_missing_run_is_a_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        membra.load_run(tmp_path / "nope")


# ---- 5. the CLI verbs use it -----------------------------------------------------------------
def test_eval_prints_the_model_name(runs, tiny):
    res = cli("eval", runs["zoo"])
    assert res.exit_code == 0, res.output
    assert "model: tiny" in res.output


def test_export_nir_of_a_zoo_run_needs_no_dataset(runs, tiny, monkeypatch, tmp_path):
    pytest.importorskip("nir")
    monkeypatch.setattr(engine, "build_datasets", _no_data)
    res = cli("export", "nir", runs["zoo"], "--out", tmp_path / "m.nir")
    assert res.exit_code == 0, res.output
    assert "outputs match" in res.output and "tiny" in res.output


# ---- 6. `import membra` stays as light as before ---------------------------------------------
def test_top_level_load_run_is_lazy():
    code = ("import sys, membra; before = 'membra.train' in sys.modules; "
            "f = membra.load_run; print(before, 'membra.train' in sys.modules, f.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True", "membra.train.runs"]


def test_digest_helper_matches_the_documented_rule(runs):
    """The reseal helper (_tiny.reseal) writes through membra; check one file by the documented rule
    (sha256 of the file with the digest digits read as '0') so the helper cannot hide a bug."""
    path = ck.resolve_checkpoint(runs["zoo"])
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    digest = header["__metadata__"][DIGEST_KEY]
    assert hashlib.sha256(raw.replace(digest.encode(), b"0" * 64)).hexdigest() == digest


@pytest.mark.parametrize("name", ["narrow5", "sequential"])
def test_fit_announces_a_custom_model_by_its_class(tiny, tmp_path, capsys, name):
    model = CUSTOM[name]()
    fit(cfg("train.epochs=1", "run.progress=true"), run_dir=tmp_path / "r", model=model)
    first = capsys.readouterr().out.splitlines()[0]
    assert f"-> {type(model).__name__} (custom)" in first and "tiny" not in first.split("->")[1]
