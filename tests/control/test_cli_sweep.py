"""`membra control` commands and the sweep report on the shipped Pendulum controller."""

import json

import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("matplotlib")

from typer.testing import CliRunner  # noqa: E402

from membra.cli import app  # noqa: E402
from membra.control import pretrained_path  # noqa: E402
from membra.control.sweep import degradation_grid, markdown_table, run_sweep, write_report  # noqa: E402,E501

needs_pendulum = pytest.mark.skipif(
    not (pretrained_path("pendulum") / "actor.safetensors").is_file(),
    reason="shipped Pendulum controller missing")


def test_cli_train_bad_env():
    runner = CliRunner()
    r = runner.invoke(app, ["control", "train", "--env", "Nope-v0", "--steps", "10"])
    assert r.exit_code == 2 and "unknown gymnasium environment" in r.output, r.output
    r = runner.invoke(app, ["control", "train", "--env", "CartPole-v1", "--steps", "10"])
    assert r.exit_code == 2 and "Box" in r.output, r.output


def test_grid_per_task():
    g = degradation_grid("Pendulum-v1")
    assert g[0] is None and ("weight_gn", 0.05) in g and ("weight_zero", 0.3) in g
    assert not any(c and c[0] in ("lidar_gn", "dynamic") for c in g)
    nav = degradation_grid("membra/LidarNav2D-v0", full=True)
    assert ("ray_dropout", 8) in nav and ("dynamic", 1) in nav
    assert not any(c and c[0].startswith("joint") for c in nav)


@needs_pendulum
def test_sweep_report_files(tmp_path):
    res = run_sweep("pendulum", episodes=1, conditions=[None, ("weight_gn", 0.05)],
                    progress=False, max_steps=50, repeats=2)
    assert len(res["rows"]) == 4 and len(res["episodes"]) == 2 + 2 * 2  # healthy: one draw
    assert [len(r["draws"]) for r in res["rows"]] == [1, 1, 2, 2]
    on = [r for r in res["rows"] if r["dwam"]]
    assert all(r["drift"] > 0 for r in on)
    table = markdown_table(res)
    assert "weight_gn 0.05" in table and "healthy" in table
    out = write_report(res, tmp_path / "rep")
    assert {p.name for p in out.iterdir()} == {"sweep.md", "sweep.json", "episodes.csv",
                                               "returns.png", "firing.png"}
    assert json.loads((out / "sweep.json").read_text())["env_id"] == "Pendulum-v1"


@needs_pendulum
def test_cli_eval_and_errors():
    runner = CliRunner()
    r = runner.invoke(app, ["control", "eval", "pendulum", "--degrade", "weight_zero:0.3",
                            "--dwam", "on", "--episodes", "1"])
    assert r.exit_code == 0, r.output
    assert "return" in r.output and "layers.0" in r.output
    r = runner.invoke(app, ["control", "eval", "pendulum", "--dwam", "maybe"])
    assert r.exit_code != 0
    r = runner.invoke(app, ["control", "eval", "/nonexistent/run"])
    assert r.exit_code != 0 and "not a controller checkpoint" in r.output
    for bad, msg in (("weight_zero:2", "p must"), ("ray_dropout:4", "LidarNav2D")):
        r = runner.invoke(app, ["control", "eval", "pendulum", "--degrade", bad])
        assert r.exit_code == 2 and msg in r.output, r.output  # a usage error, no traceback
    r = runner.invoke(app, ["control", "eval", "pendulum", "--eta", "-1"])
    assert r.exit_code == 2 and "eta" in r.output
