"""``python -m membra.bench.models`` at a tiny shape: one row per model, RLIF's GEMM share and
the load average printed."""

from __future__ import annotations

import re

from membra.bench import models as bench


def test_bench_models_prints_rows_gemm_share_and_load(capsys):
    bench.main(["2", "3", "8", "--rlif-n", "5"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "ms" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["CubaLIF", "ALIF", "Delay(max 4)", "RLIF"]
    for r in rows:
        t, t_lif, ratio = (float(c) for c in r.split("|")[3:6])
        assert t >= 0 and t_lif >= 0 and ratio > 0
    m = re.search(r"RLIF's GEMMs alone: ([\d.]+) ms = (\d+)% of its fwd\+bwd", out)
    assert m and float(m.group(1)) >= 0
    assert re.search(r"load average \(1 min\): [\d.]+", out)
    m = re.search(r"RLIF as one node ([\d.]+) ms, as per-step ops ([\d.]+) ms", out)
    assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0
