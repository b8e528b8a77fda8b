"""A stopped `membra control sweep` resumes: finished draws are read back from `draws.jsonl`
and the resumed sweep equals an uninterrupted one, draw for draw."""

import json

import pytest

pytest.importorskip("gymnasium")

from typer.testing import CliRunner  # noqa: E402

import membra.control.sweep as sweep_mod  # noqa: E402
from membra.cli import app  # noqa: E402
from membra.control import pretrained_path  # noqa: E402
from membra.control.sweep import run_sweep  # noqa: E402
from membra.homeostasis import DWAMConfig  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (pretrained_path("pendulum") / "actor.safetensors").is_file(),
    reason="shipped Pendulum controller missing")

CONDS = [None, ("weight_gn", 0.05), ("weight_zero", 0.3)]
KW = dict(episodes=2, conditions=CONDS, repeats=2, max_steps=6, progress=False)
N_JOBS = 2 + 2 * 2 * 2  # healthy: one draw per arm; weight damage: 2 draws per arm
REAL_EVALUATE = sweep_mod.evaluate


class Stop(RuntimeError):
    pass


def _counting(monkeypatch, fail_after=None):
    """Wrap the sweep's ``evaluate``: count calls, raise :class:`Stop` after ``fail_after``."""
    calls, real = [], REAL_EVALUATE

    def wrapped(*a, **k):
        if fail_after is not None and len(calls) >= fail_after:
            raise Stop("stopped")
        calls.append(k.get("degradation_seed"))
        return real(*a, **k)
    monkeypatch.setattr(sweep_mod, "evaluate", wrapped)
    return calls


@pytest.fixture(scope="module")
def reference():
    return {p: run_sweep("pendulum", persist=p, **KW) for p in (False, True)}


def _same(a: dict, b: dict) -> None:
    assert a["rows"] == b["rows"]
    assert a["episodes"] == b["episodes"]


@pytest.mark.parametrize("persist", [False, True])
@pytest.mark.parametrize("stop_at", [0, 1, 3, 7, N_JOBS - 1])
def test_resumed_sweep_equals_uninterrupted(tmp_path, monkeypatch, reference, persist, stop_at):
    rec = tmp_path / "draws.jsonl"
    _counting(monkeypatch, fail_after=stop_at)
    with pytest.raises(Stop):
        run_sweep("pendulum", persist=persist, record=rec, **KW)
    assert len(rec.read_text().splitlines()) == stop_at  # every finished draw is on disk
    calls = _counting(monkeypatch)
    res = run_sweep("pendulum", persist=persist, record=rec, resume=True, **KW)
    assert len(calls) == N_JOBS - stop_at  # finished draws are not run again
    _same(res, reference[persist])
    # a second resume runs nothing at all and still gives the same sweep
    calls = _counting(monkeypatch)
    _same(run_sweep("pendulum", persist=persist, record=rec, resume=True, **KW),
          reference[persist])
    assert calls == []


@pytest.mark.parametrize("cut", ["torn", "garbage", "blank"])
def test_damaged_record_lines_are_run_again(tmp_path, monkeypatch, reference, cut):
    rec = tmp_path / "draws.jsonl"
    run_sweep("pendulum", record=rec, **KW)
    lines = rec.read_text().splitlines(keepends=True)
    assert len(lines) == N_JOBS
    bad = {"torn": lines[-1][: len(lines[-1]) // 2],  # a write cut off by a kill
           "garbage": "\x00\xffnot json\n", "blank": "\n"}[cut]
    rec.write_text("".join(lines[:-1]) + bad)
    calls = _counting(monkeypatch)
    _same(run_sweep("pendulum", record=rec, resume=True, **KW), reference[False])
    assert len(calls) == 1  # only the damaged draw


@pytest.mark.parametrize("change,word", [
    (dict(episodes=3), "episodes"), (dict(max_steps=7), "max_steps"),
    (dict(dwam_config=DWAMConfig(eta=3e-4)), "dwam"), (dict(persist=True), "persist")])
def test_resume_refuses_a_record_of_other_settings(tmp_path, change, word):
    rec = tmp_path / "draws.jsonl"
    run_sweep("pendulum", record=rec, **{**KW, "conditions": [None]})
    with pytest.raises(ValueError, match=f"other settings.*{word}"):
        run_sweep("pendulum", record=rec, resume=True, **{**KW, "conditions": [None], **change})


def test_without_resume_the_record_starts_afresh(tmp_path, monkeypatch):
    rec = tmp_path / "draws.jsonl"
    run_sweep("pendulum", record=rec, **{**KW, "conditions": [None]})
    calls = _counting(monkeypatch)
    run_sweep("pendulum", record=rec, **{**KW, "conditions": [None]})
    assert len(calls) == 2 and len(rec.read_text().splitlines()) == 2


def test_cli_sweep_resume(tmp_path, monkeypatch):
    runner = CliRunner()
    out = tmp_path / "rep"
    args = ["control", "sweep", "pendulum", "--conditions", "healthy", "--episodes", "1",
            "--out", str(out), "--no-progress"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    first = json.loads((out / "sweep.json").read_text())
    assert len((out / "draws.jsonl").read_text().splitlines()) == 2
    calls = _counting(monkeypatch, fail_after=0)  # a resumed run must not evaluate again
    r = runner.invoke(app, args + ["--resume"])
    assert r.exit_code == 0, r.output
    assert calls == []
    again = json.loads((out / "sweep.json").read_text())
    assert again["rows"] == first["rows"]
    r = runner.invoke(app, args + ["--resume", "--eta", "3e-4"])
    assert r.exit_code == 2 and "other settings" in r.output, r.output
