"""`make bench` runs end to end on a tiny size (its timings are never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_writes_json_and_markdown(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.run import main

    main(["--steps", "2", "--neurons", "64", "--repeats", "1", "--no-compile", "--no-conv",
          "--out", str(tmp_path)])
    data = json.loads((tmp_path / "kernels.json").read_text())
    row = data["neuron"]["cpu"]["by_T"]["2"]
    assert "membra-reference" in row["methods"]
    assert row["limits"]["copy_x3"]["median_ms"] > 0
    md = (tmp_path / "kernels.md").read_text()
    assert "forward + backward" in md and "T=2" in md
