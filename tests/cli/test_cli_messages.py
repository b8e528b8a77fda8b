"""What the CLI tells the user when there is nothing to do or nothing was saved."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import membra.cli as cli


@pytest.mark.parametrize("T", [2, 3])
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_report_patterns_without_out_says_nothing_was_saved(T, reset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli.app, ["report", "patterns", "--T", str(T), "--reset", reset])
    assert res.exit_code == 0, res.output
    assert "nothing saved" in res.output and "--out" in res.output
    assert list(tmp_path.iterdir()) == []


def test_report_patterns_with_out_names_what_it_wrote(tmp_path):
    res = CliRunner().invoke(cli.app, ["report", "patterns", "--T", "2", "--out",
                                       str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "nothing saved" not in res.output
    assert str(tmp_path / "p" / "patterns.md") in res.output


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A one-epoch digits run, trained to its end."""
    from membra.train import fit, load_config

    root = tmp_path_factory.mktemp("runs")
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "digits_imp_lts.toml",
                      ["train.epochs=1", f"run.out_dir={root}", "run.name=done",
                       "run.plots=false", "run.tensorboard=false", "run.progress=false"])
    fit(cfg)
    return root / "done"


def _checkpoints(run):
    return sorted(p.name for p in (run / "checkpoints").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--set", "train.epochs=1"], ["--set", "train.max_steps=5"]])
@pytest.mark.parametrize("point_at", ["folder", "checkpoint"])
def test_resume_of_a_finished_run_says_it_is_finished(finished_run, extra, point_at):
    before = _checkpoints(finished_run)
    target = finished_run if point_at == "folder" else \
        finished_run / "checkpoints" / [n for n in before if n.endswith(".safetensors")][-1]
    res = CliRunner().invoke(cli.app, ["train", "--resume", str(target), *extra])
    assert res.exit_code == 0, res.output
    assert "finished run" in res.output and "nothing was trained" in res.output
    assert f"membra eval {target}" in res.output
    assert "resumed from" not in res.output
    assert _checkpoints(finished_run) == before


@pytest.mark.slow
def test_resume_with_more_epochs_trains_on(finished_run, tmp_path):
    import shutil

    run = tmp_path / "more"
    shutil.copytree(finished_run, run)
    res = CliRunner().invoke(cli.app, ["train", "--resume", str(run), "--set", "train.epochs=2",
                                       "--set", "run.progress=false"])
    assert res.exit_code == 0, res.output
    assert "finished run" not in res.output
    assert any(n.startswith("epoch_0002") for n in _checkpoints(run))


@pytest.mark.slow
@pytest.mark.parametrize("arms", [("baseline",), ("baseline", "imp_lts")])
def test_report_imp_with_one_seed_prints_no_zero_spread(arms, tmp_path):
    """One seed has no spread to show: no "± 0.0" anywhere in what `report imp` prints."""
    cfgs = [str(Path(__file__).resolve().parents[2] / "configs" / "study" / "digits" /
                f"{a}.toml") for a in arms]
    res = CliRunner().invoke(cli.app, ["report", "run-study", *cfgs, "--seeds", "0", "--epochs",
                                       "1", "--out", str(tmp_path / "runs"), "--set",
                                       "run.plots=false", "--set", "run.progress=false"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli.app, ["report", "imp", str(tmp_path / "runs"), "--out",
                                       str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "| baseline | 1 |" in res.output
    assert "± 0.0" not in res.output
