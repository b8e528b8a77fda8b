"""``membra train`` / ``membra eval`` end to end: in-process (CliRunner) and as a subprocess
(``python -m membra``) on the real digits config."""

import json
import os
import subprocess
import sys
from pathlib import Path

import _tiny
import pytest
from typer.testing import CliRunner

from membra.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_train_then_eval_in_process(tmp_path, monkeypatch):
    _tiny.patch(monkeypatch)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(_tiny.TINY_TOML)
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(cfg), "--set", f"run.out_dir='{tmp_path}'",
                              "--set", "train.epochs=1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "tiny"
    assert "test accuracy per time step" in res.output and "t=3" in res.output
    assert (run / "config.toml").read_text().count("epochs = 1") == 1
    res = runner.invoke(app, ["eval", str(run)])
    assert res.exit_code == 0, res.output
    assert "epoch_0001.safetensors" in res.output and "last-step readout" in res.output
    res = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.epochs=2"])
    assert res.exit_code == 0, res.output
    assert "resumed from" in res.output and "epoch   2/2" in res.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    res = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.epochs=3",
                              "--set", "train.lr=0.5"])  # not finished: the changed lr is refused
    assert res.exit_code == 2 and "train.lr: checkpoint 0.01 vs config 0.5" in res.output


def test_cli_errors_are_clear(tmp_path, monkeypatch):
    _tiny.patch(monkeypatch)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(_tiny.TINY_TOML)
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(cfg), "--set", "train.lrr=1"])
    assert res.exit_code == 2 and "did you mean 'lr'" in res.output
    res = runner.invoke(app, ["train", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2 and "missing.toml" in res.output
    res = runner.invoke(app, ["train"])
    assert res.exit_code == 2 and "--resume" in res.output
    res = runner.invoke(app, ["eval", str(tmp_path)])
    assert res.exit_code == 2 and "no checkpoint" in res.output
    res = runner.invoke(app, ["eval", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "nowhere" in res.output and "run folder" in res.output


def test_nproc_checks_the_config_before_starting_processes(monkeypatch):
    from membra.train import distributed

    def no_launch(*args):
        raise AssertionError("torchrun must not start for a bad config")

    monkeypatch.setattr(distributed, "launch", no_launch)
    runner = CliRunner()
    digits = str(ROOT / "configs/digits_imp_lts.toml")
    res = runner.invoke(app, ["train", digits, "--nproc", "2", "--set", "train.lrr=1"])
    assert res.exit_code == 2 and "did you mean 'lr'" in res.output
    res = runner.invoke(app, ["train", digits, "--nproc", "2", "--set", "data.name=digts"])
    assert res.exit_code == 2 and "data.name='digts'" in res.output and "digits-dvs" in res.output
    res = runner.invoke(app, ["train", digits, "--nproc", "2", "--set", "model.name=vgg"])
    assert res.exit_code == 2 and "model.name='vgg'" in res.output and "vgg11" in res.output


def test_registry_listings():
    runner = CliRunner()
    assert "digits" in runner.invoke(app, ["datasets"]).output.split()
    assert "mlp" in runner.invoke(app, ["models"]).output.split()


def test_train_real_digits_config_in_process(tmp_path):
    res = CliRunner().invoke(app, [
        "train", str(ROOT / "configs/digits_imp_lts.toml"), "--set", "train.epochs=2",
        "--set", f"run.out_dir='{tmp_path}'", "--set", "run.plots=false"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "digits_imp_lts" / "metrics.jsonl").read_text().splitlines()[-1])
    assert m["test_samples"] == 597 and len(m["test_acc_per_step"]) == 4
    assert set(m["firing_rate"]) == {"body.2", "body.5"}
    assert m["test_acc"] > 0.5


@pytest.mark.slow
def test_python_m_membra_train_digits(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "membra", "train", str(ROOT / "configs/digits_imp_lts.toml"),
           "--set", "train.epochs=2", "--set", f"run.out_dir='{tmp_path}'",
           "--set", "run.plots=false"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "epoch   2/2" in res.stdout and "last-step readout" in res.stdout
    run = tmp_path / "digits_imp_lts"
    lines = (run / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert len(lines) == 2 and len(last["test_acc_per_step"]) == 4
    assert last["test_samples"] == 597 and last["test_acc"] > 0.5
    res = subprocess.run([sys.executable, "-m", "membra", "eval", str(run)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{100 * last['test_acc']:.2f}%" in res.stdout


@pytest.mark.slow
def test_membra_train_nproc_2_gloo(tmp_path):
    """`membra train --nproc 2` starts torchrun with two gloo processes; rank 0 alone writes
    the run folder and the metrics cover the whole data."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cmd = [sys.executable, "-m", "membra", "train", str(ROOT / "configs/digits_imp_lts.toml"),
           "--nproc", "2", "--device", "cpu", "--set", "train.epochs=1",
           "--set", f"run.out_dir='{tmp_path}'", "--set", "run.plots=false",
           "--set", "run.progress=false"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("x 2 processes") == 1 and res.stdout.count("epoch   1/1") == 1
    run = tmp_path / "digits_imp_lts"
    assert not (tmp_path / "digits_imp_lts-1").exists()
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["test_samples"] == 597 and last["step"] == 19  # ceil(1200 / 64 global)
    from membra.train import checkpoint as ck

    assert ck.read_meta(ck.resolve_checkpoint(run))["world_size"] == 2
