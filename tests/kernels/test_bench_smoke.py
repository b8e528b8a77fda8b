"""`membra bench` / `make bench` run end to end on a tiny size (timings are never asserted)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from membra.bench.run import main
from membra.cli import app


def _check(out, T):
    data = json.loads((out / "kernels.json").read_text())
    row = data["neuron"]["cpu"]["by_T"][str(T)]
    assert "membra-reference" in row["methods"]
    assert row["limits"]["copy_x3"]["median_ms"] > 0
    md = (out / "kernels.md").read_text()
    assert "forward + backward" in md and f"T={T}" in md
    if "membra-cpu" in row["methods"]:  # a user's surrogate against the built-in, same run
        assert "membra-cpu-custom-surrogate" in row["methods"]
        ratio = data["neuron"]["cpu"]["custom_surrogate_ratio"]["membra-cpu-custom-surrogate"]
        assert ratio[str(T)] > 0
        assert "Custom surrogate over built-in" in md


def test_bench_writes_json_and_markdown(tmp_path):
    main(["--steps", "2", "--neurons", "64", "--repeats", "1", "--no-compile", "--no-conv",
          "--out", str(tmp_path)])
    _check(tmp_path, 2)


def test_membra_bench_cli(tmp_path):
    r = CliRunner().invoke(app, ["bench", "--steps", "3", "--neurons", "32", "--repeats", "1",
                                 "--no-compile", "--no-conv", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    _check(tmp_path, 3)


def test_membra_bench_bad_steps(tmp_path):
    r = CliRunner().invoke(app, ["bench", "--steps", "4,x", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--steps" in r.output
    assert not (tmp_path / "kernels.json").exists()
