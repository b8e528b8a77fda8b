"""`membra control` usability: examples in every --help, eval --repeats / --dwam both,
help texts, shipped names shadowed by local folders, tune never writes into the package,
sweep prints its confidence intervals."""

import hashlib
import re
import shutil
import warnings

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("matplotlib")

import typer  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from membra.cli import app  # noqa: E402
from membra.control import pretrained_path  # noqa: E402
from membra.control.checkpoint import is_shipped, load_actor, update_config  # noqa: E402
from membra.control.stats import bootstrap_ci  # noqa: E402

SUBCOMMANDS = ("train", "eval", "sweep", "tune")
runner = CliRunner()
needs_pendulum = pytest.mark.skipif(
    not (pretrained_path("pendulum") / "actor.safetensors").is_file(),
    reason="shipped Pendulum controller missing")


def _example(name):
    r = runner.invoke(app, ["control", name, "--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    m = re.search(r"Example: membra control (.*?) ╭", text)
    assert m, f"`membra control {name} --help` shows no example:\n{r.output}"
    return m.group(1).split()


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_help_has_an_example_that_parses(name):
    argv = _example(name)
    assert argv[0] == name
    cmd = typer.main.get_command(app).commands["control"].commands[name]
    cmd.make_context(name, argv[1:])  # raises on an unknown option or a bad value


@pytest.mark.parametrize("name,opts", [
    ("eval", ("--degradation-seed", "--zeta", "--rho", "--repeats", "--persist")),
    ("sweep", ("--zeta", "--rho", "--eta", "--persist", "--guard-k", "--repeats")),
    ("tune", ("--persist", "--repeats"))])
def test_options_have_help_text(name, opts):
    cmd = typer.main.get_command(app).commands["control"].commands[name]
    helps = {o: p.help for p in cmd.params for o in getattr(p, "opts", [])}
    for o in opts:
        assert helps.get(o), f"{name} {o} has no help text"


@needs_pendulum
def test_eval_both_prints_the_recovered_fraction_over_draws():
    r = runner.invoke(app, ["control", "eval", "pendulum", "--degrade", "weight_zero:0.3",
                            "--dwam", "both", "--repeats", "2", "--episodes", "1"])
    assert r.exit_code == 0, r.output
    assert "over 2 draws x 1 episodes" in r.output
    assert "DWAM off" in r.output and "DWAM on" in r.output
    assert "recovered fraction of the lost return" in r.output
    assert "draw 2/2" in r.output  # progress, one line per draw


def _copy_checkpoint(dest):
    shutil.copytree(pretrained_path("pendulum"), dest)
    return dest


@needs_pendulum
def test_local_folder_named_like_a_shipped_controller(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pendulum").mkdir()  # not a checkpoint: must not be silently "not found"
    r = runner.invoke(app, ["control", "eval", "pendulum", "--episodes", "1"])
    assert r.exit_code == 2 and "shadows the shipped controller" in r.output, r.output
    assert "shipped:pendulum" in r.output
    shutil.rmtree(tmp_path / "pendulum")
    _copy_checkpoint(tmp_path / "pendulum")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        load_actor("pendulum")
    assert any("not the shipped controller" in str(x.message) for x in w)
    _, cfg = load_actor("shipped:pendulum")
    assert cfg["env_id"] == "Pendulum-v1"


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _fake_evaluate(actor, env_fn, episodes, seed=1000, degradation=None, dwam=None, **kw):
    base = {None: -150.0}.get(degradation, -400.0)
    bonus = 0.0 if dwam is None else 10.0 * (1 + kw.get("degradation_seed", 0))
    rets = [base + bonus + e for e in range(episodes)]
    return {"mean": float(np.mean(rets)), "std": float(np.std(rets)), "returns": rets,
            "layers": {"layers.0": {"cv": 1.0, "rate_dev": 0.1, "drift": 0.0,
                                    "mean_rate": 0.1}},
            "episodes": [{"episode": e, "return": r} for e, r in enumerate(rets)]}


@needs_pendulum
def test_tune_never_writes_into_the_installed_package(tmp_path, monkeypatch):
    import membra.control as mc

    monkeypatch.setattr(mc, "evaluate", _fake_evaluate)
    ship = pretrained_path("pendulum")
    before = _digest(ship)
    for run in ("pendulum", "shipped:pendulum"):
        r = runner.invoke(app, ["control", "tune", run, "--etas", "1e-4,3e-4",
                                "--episodes", "2"])
        assert r.exit_code == 0, r.output
        assert "not saved" in r.output and "read-only" in r.output
    assert _digest(ship) == before
    with pytest.raises(PermissionError, match="read-only"):
        update_config("pendulum", dwam={})
    assert is_shipped(ship) and not is_shipped(tmp_path)
    copy = _copy_checkpoint(tmp_path / "mine")
    r = runner.invoke(app, ["control", "tune", str(copy), "--etas", "1e-4", "--episodes", "2",
                            "--persist"])
    assert r.exit_code == 0, r.output
    _, cfg = load_actor(copy)
    assert cfg["dwam"]["persist"] == {"eta": 1e-4, "guard_k": 20}
    assert cfg["dwam"]["tuning_persist"]["validation_seed"] == 2000


@needs_pendulum
def test_sweep_prints_bootstrap_cis_over_draws(tmp_path, monkeypatch):
    import membra.control.sweep as sw

    monkeypatch.setattr(sw, "evaluate", _fake_evaluate)
    r = runner.invoke(app, ["control", "sweep", "pendulum", "--conditions",
                            "healthy,weight_gn:0.05,obs_gn:0.1", "--repeats", "4", "--episodes",
                            "3",
                            "--out", str(tmp_path / "rep"), "--no-progress"])
    assert r.exit_code == 0, r.output
    # no DWAM: every draw -399 (mean of -400..-398); DWAM: -399 + 10 * (1 + draw)
    on = np.array([-399.0 + 10 * (1 + d) for d in range(4)])
    lo, hi = bootstrap_ci(on)
    assert f"{on.mean():.1f} [{lo:.1f}, {hi:.1f}]" in r.output
    rec = (on - -399.0).sum() / ((-149.0 - -399.0) * 4)
    assert f"{rec:+.0%}" in r.output and "(4/4 draws lose)" in r.output
    obs = next(x for x in r.output.splitlines() if x.startswith("| obs_gn 0.1 |"))
    assert "| +4% [+4%, +4%] |" in obs, obs  # one draw: CI over paired episodes
    md = (tmp_path / "rep" / "sweep.md").read_text()
    assert "### weight_gn 0.05: per draw" in md and "### obs_gn" not in md
    from membra.control.sweep import load_sweep, markdown_table

    monkeypatch.chdir(tmp_path)  # no --out: a shipped controller's report goes to ./runs
    before = _digest(pretrained_path("pendulum"))
    r = runner.invoke(app, ["control", "sweep", "shipped:pendulum", "--conditions", "healthy",
                            "--episodes", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "runs" / "sweep-pendulum" / "sweep.md").is_file()
    assert _digest(pretrained_path("pendulum")) == before

    assert markdown_table(load_sweep(tmp_path / "rep")) in md  # reports can be rewritten
    line = next(x for x in md.splitlines() if x.startswith("Produced by: `membra control "
                                                               "sweep pendulum "))
    for part in ("--conditions healthy,weight_gn:0.05,obs_gn:0.1", "--repeats 4", "--episodes 3",
                 f"--out {tmp_path / 'rep'}", "--no-progress"):
        assert part in line, line
