"""`membra construct` verbs: compile, check, plot, classify (tiny settings)."""

import json

import pytest
from typer.testing import CliRunner

from membra.cli import app
from membra.construct import SpikingCircuit

runner = CliRunner()


def flat(text: str) -> str:
    """Output with rich's box characters and line breaks removed."""
    return " ".join(text.replace("│", " ").split())


def test_compile_pattern_and_check(tmp_path):
    out = tmp_path / "c.json"
    res = runner.invoke(app, ["construct", "compile", "--pattern", "1,0,1,1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "12 neurons" in res.output
    circ = SpikingCircuit.load(out)
    assert circ.n_neurons == 12 and circ.requires_clock
    res = runner.invoke(app, ["construct", "check", str(out), "--steps", "500"])
    assert res.exit_code == 0, res.output
    assert "144 runs, 1152 steps, 0 mismatches" in res.output
    assert "4500 steps, 0 mismatches" in res.output and "0.0625" in res.output


def test_compile_rule_file_and_failed_check(tmp_path):
    rule = tmp_path / "r.json"
    rule.write_text(json.dumps({"m": 2, "n_inputs": 1, "table": [0, 1, 0, 1]}))
    out = tmp_path / "c.json"
    assert runner.invoke(app, ["construct", "compile", str(rule), "--out", str(out)]
                         ).exit_code == 0
    other = tmp_path / "o.json"
    other.write_text(json.dumps({"m": 2, "table": [0, 1, 0, 0]}))
    res = runner.invoke(app, ["construct", "check", str(out), "--rule", str(other),
                              "--steps", "100"])
    assert res.exit_code == 1 and "mismatches" in res.output


def test_compile_errors(tmp_path):
    res = runner.invoke(app, ["construct", "compile", "--pattern", "1,2", "--out", "x.json"])
    assert res.exit_code != 0 and "0/1 values" in flat(res.output)
    res = runner.invoke(app, ["construct", "compile", str(tmp_path / "nope.json"),
                              "--out", "x.json"])
    assert res.exit_code != 0 and "does not exist" in flat(res.output)
    res = runner.invoke(app, ["construct", "compile", "--out", "x.json"])
    assert res.exit_code != 0 and "either RULE.json or --pattern" in flat(res.output)
    res = runner.invoke(app, ["construct", "check", str(tmp_path / "missing.json")])
    assert res.exit_code != 0 and "does not exist" in flat(res.output)


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "c.json"
    runner.invoke(app, ["construct", "compile", "--pattern", "1,1,0,1", "--out", str(out)])
    png = tmp_path / "r.png"
    res = runner.invoke(app, ["construct", "plot", str(out), "--out", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_classify_tiny():
    res = runner.invoke(app, ["construct", "classify", "--epochs", "1", "--trials", "3",
                              "--n", "400"])
    assert res.exit_code == 0, res.output
    assert "compiled circuit" in res.output and "100.00%" in res.output


def test_bad_files_and_options_give_clean_errors(tmp_path):
    circ = tmp_path / "c.json"
    runner.invoke(app, ["construct", "compile", "--pattern", "1,1", "--out", str(circ)])
    cases = [
        ("not json", ["check"], "is not valid JSON"),
        (json.dumps([1, 2]), ["check"], "must be a dict"),
        (json.dumps({"inputs": ["x0"], "neurons": ["A"], "synapses": [["x0", "A"]],
                     "output": "A"}), ["plot"], "synapses[0] must be"),
        (json.dumps({"m": 2, "table": [0, 1]}), ["compile", "--out", str(tmp_path / "o.json")],
         "= 4 entries"),
    ]
    for text, verb, msg in cases:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        res = runner.invoke(app, ["construct", verb[0], str(bad), *verb[1:]])
        assert res.exit_code == 2 and msg in flat(res.output), (verb, res.output)
        assert "Traceback" not in res.output
    for opts, msg in ((["--rate", "2"], "rate must be in [0, 1]"),
                      (["--steps", "0"], "steps must be an int >= 1")):
        res = runner.invoke(app, ["construct", "plot", str(circ), "--out",
                                  str(tmp_path / "r.png"), *opts])
        assert res.exit_code == 2 and msg in flat(res.output)
    for opts, msg in ((["--n", "401"], "n must be even"), (["--trials", "0"], "trials must be")):
        res = runner.invoke(app, ["construct", "classify", "--epochs", "1", *opts])
        assert res.exit_code == 2 and msg in flat(res.output)
