"""`membra construct scaling`: a quick default with an estimate and a progress bar, a bounded
memory per check, and a report that states only membra's own bounds (no unsourced claim)."""

import re
from pathlib import Path

import pytest
from construct_cases import random_rules
from typer.testing import CliRunner

from membra.cli import app
from membra.construct import SpikeRule, compile_rule
from membra.construct.compact import gap_circuit
from membra.construct.verify import check_random, check_windows

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

#: the abstract of arXiv:2512.16872, the only text of the paper that could be read
ABSTRACT = ("fully quantitative, constructive, and near-optimal in the number of required "
            "weights and neurons")
#: statements of an order of growth attributed to the paper, which no available text gives
UNSOURCED = [r"√", r"sqrt\s*\(?\s*m", r"O\(\s*sqrt", r"paper'?s order", r"method\s*=\s*.paper",
             r"NotImplementedError", r"log\s*m\)"]


def _construct_texts():
    files = [ROOT / "README.md", ROOT / "docs" / "construct.md",
             ROOT / "reports" / "construct_scaling.md", ROOT / "src/membra/cli/construct.py",
             *sorted((ROOT / "src/membra/construct").glob("*.py"))]
    return [f for f in files if f.is_file()]


def test_no_unsourced_bound_of_the_paper():
    """No file of the construct area (docs, report, README, sources) states an order of growth
    as the paper's or offers its construction; the docs and the report quote the abstract."""
    hits = []
    for path in _construct_texts():
        text = path.read_text()
        for pattern in UNSOURCED:
            for hit in re.finditer(pattern, text):
                hits.append(f"{path.name}: {text[max(0, hit.start() - 50):hit.end() + 50]!r}")
        if path.name in ("construct.md", "construct_scaling.md") and \
                ABSTRACT not in " ".join(text.split()):
            hits.append(f"{path.name} does not quote the abstract")
    assert not hits, "\n".join(hits)


def _chunk_cases():
    yield compile_rule(random_rules(1, 4, 1, seed=3)[0]), random_rules(1, 4, 1, seed=3)[0]
    yield compile_rule(random_rules(2, 2, 1, seed=4)[0]), random_rules(2, 2, 1, seed=4)[0]
    rule = SpikeRule.from_predicate(lambda w: w[0, 0] and w[0, 3] and not w[0, 1:3].any(), 5)
    yield gap_circuit([False, False, True, False, False]), rule


@pytest.mark.parametrize("k", range(3))
@pytest.mark.parametrize("max_cells", [1, 37, 1000, 10**9])
def test_chunked_checks_equal_unchunked(k, max_cells):
    """Splitting the batch bounds the memory and changes nothing in the result."""
    circ, rule = list(_chunk_cases())[k]
    for fn, kw in ((check_windows, {}), (check_random, {"T": 300})):
        whole = fn(circ, rule, seed=k, **kw)
        parts = fn(circ, rule, seed=k, max_cells=max_cells, **kw)
        assert (parts.steps, parts.mismatches, parts.runs) == \
            (whole.steps, whole.mismatches, whole.runs)
        assert parts.margin == whole.margin and whole.mismatches == 0 and whole.steps > 0


@pytest.mark.parametrize("max_m", [2, 3, 5])
def test_scaling_cli_estimates_shows_progress_and_names_its_command(max_m, tmp_path):
    pytest.importorskip("matplotlib")
    from membra.construct.scaling import plan

    res = runner.invoke(app, ["construct", "scaling", "--max-m", str(max_m),
                              "--out-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    checks = plan(max_m)
    assert len(checks) == 3 * (max_m - 1)  # baseline + compact exact gap, spiked-k-ago
    est = re.search(r"(\d+) circuits to check \(m = 2\.\.(\d+)\), ([\d,]+) grid steps; "
                    r"estimated (\d+) s", res.output)
    assert est, res.output
    assert (int(est[1]), int(est[2])) == (len(checks), max_m)
    report = (tmp_path / "construct_scaling.md").read_text()
    assert f"`membra construct scaling --out-dir {tmp_path} --max-m {max_m}`" in report
    rows = [line for line in report.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [int(r.split("|")[1]) for r in rows] == [*range(2, max_m + 1), 32, 64, 128, 256]
    # the estimate counts exactly the grid steps that the checks then compare
    steps = sum(int(r.split("|")[7]) for r in rows if r.split("|")[7].strip() != "-")
    assert int(est[3].replace(",", "")) == steps == sum(c.steps for c in checks)
    assert f"Total: {steps:,} grid steps checked, 0 mismatches" in report
    assert f"{len(checks)}/{len(checks)} circuits" in res.output  # the bar reached the end
    assert (tmp_path / "construct_scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_scaling_default_and_full_sizes():
    """The default checks up to m = 12 (about 20 s), --full up to m = 16; the estimate for
    the default is far below the full one (counted in grid steps, not timed)."""
    from membra.construct.scaling import DEFAULT_MAX_M, FULL_MAX_M, command, plan

    assert (DEFAULT_MAX_M, FULL_MAX_M) == (12, 16)
    assert command("reports", DEFAULT_MAX_M, True) == "membra construct scaling --out-dir reports"
    assert command("reports", FULL_MAX_M, True).endswith("--full")
    default = sum(c.steps for c in plan(DEFAULT_MAX_M))
    full = sum(c.steps for c in plan(FULL_MAX_M))
    assert 10 * default < full
    windows = sum((L + m) * 2**m for m in range(2, 5) for L in range(2 * m + 1))
    assert sum(c.steps for c in plan(4)) == 3 * windows + 3 * 3 * 9 * 2000
