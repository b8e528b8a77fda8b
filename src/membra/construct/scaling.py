"""Neuron and weight counts against the memory ``m``: baseline vs compact (report + plot).

Families (one input line):

- ``exact gap``: :math:`y[t] = x[t]\\,x[t-k]\\prod_{0<j<k}(1 - x[t-j])` with ``m = k + 1``
  ("the previous input spike was exactly k steps ago"); both methods.
- ``spiked k ago``: :math:`y[t] = x[t]\\,x[t-k]` (anything in between); baseline only, the
  compact method does not support it (see docs/construct.md).

For ``m = 2..max_m`` the circuits are built, their counts are read off them, and each is
checked against its rule on every window after prefixes of length ``0..2m`` and on random
trains. Beyond, compact circuits are built directly and baseline counts come from the proved
formulas (checked against the built circuits wherever both exist). The counts are membra's own
constructions; no bound of the paper is plotted, because none could be read (only the abstract,
which gives no orders).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .circuit import SpikingCircuit
from .compact import gap_circuit
from .compile import compile_rule
from .rule import SpikeRule
from .verify import check_random, check_shapes, check_windows

__all__ = ["exact_gap_rule", "spiked_ago_rule", "Check", "plan", "calibrate", "scaling_rows",
           "write_report", "DEFAULT_MAX_M", "FULL_MAX_M"]

DEFAULT_MAX_M = 12   # under a minute on one core
FULL_MAX_M = 16      # the full check: 2**16 windows per prefix, about 5 minutes of CPU
MAX_SA_M = 10        # "spiked k ago" needs 2**(m-2) term neurons
BIG = (32, 64, 128, 256)
T_RANDOM = 2000      # length of the random trains (3 trains at each rate 0.1, 0.5, 0.9)


def exact_gap_rule(k: int) -> SpikeRule:
    m = k + 1
    table = np.zeros(1 << m, dtype=bool)
    table[1 | (1 << k)] = True
    return SpikeRule.from_table(table, m)


def spiked_ago_rule(k: int) -> SpikeRule:
    m = k + 1
    idx = np.arange(1 << m)
    return SpikeRule.from_table(((idx & 1) == 1) & (((idx >> k) & 1) == 1), m)


def _baseline_counts_single_window(m: int, p: int) -> tuple[int, int]:
    """Baseline counts of a one-input rule with one accepted window of ``p`` ones."""
    return 2 * m + 3 + 1, 3 + 6 * m + (2 * m - 1) + (p != 1) + 1


def _spiked_ago_counts(m: int) -> tuple[int, int, int]:
    """Baseline counts of "spiked k ago" (``A = 2**(m-2)`` windows, each with P >= 2 ones)."""
    A = 2 ** (m - 2)
    return 2 * m + 3 + A, 3 + 6 * m + A * (2 * m + 1), A


@dataclass
class Check:
    """One built circuit to check against its rule: ``key`` is ``base``, ``comp`` or ``sa``."""

    m: int
    key: str
    circuit: SpikingCircuit
    rule: SpikeRule

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """``(T, B)`` of every batch the check simulates."""
        return check_shapes(self.rule, T=T_RANDOM)

    @property
    def steps(self) -> int:
        return sum(T * B for T, B in self.shapes)

    def cost(self, per_layer_step: float, per_cell: float) -> float:
        """Predicted seconds: a Python loop over steps per topological layer, plus numpy
        work per simulated neuron-step."""
        c = self.circuit
        return sum(T * c.depth * per_layer_step + T * B * c.n_neurons * per_cell
                   for T, B in self.shapes)


def plan(max_m: int = DEFAULT_MAX_M) -> list[Check]:
    """The circuits built and checked for ``m = 2..max_m``."""
    if isinstance(max_m, bool) or not isinstance(max_m, int) or not 2 <= max_m <= FULL_MAX_M:
        raise ValueError(f"max-m must be an int in [2, {FULL_MAX_M}], got {max_m!r}")
    checks = []
    for m in range(2, max_m + 1):
        eg = exact_gap_rule(m - 1)
        checks += [Check(m, "base", compile_rule(eg), eg),
                   Check(m, "comp", compile_rule(eg, method="compact"), eg)]
        if m <= MAX_SA_M:
            sa = spiked_ago_rule(m - 1)
            checks.append(Check(m, "sa", compile_rule(sa), sa))
    return checks


def calibrate() -> tuple[float, float]:
    """Seconds per (step x layer) and per simulated neuron-step on this machine, from two
    short simulations (one long and narrow, one short and wide), each timed twice and the
    faster kept (the first run pays for warm-up); about 0.2 s."""
    c = Check(6, "base", compile_rule(exact_gap_rule(5)), exact_gap_rule(5))
    rng = np.random.default_rng(0)
    times = []
    for T, B in ((400, 1), (20, 2048)):
        X = (rng.random((T, B, 1)) < 0.5).astype(np.int8)
        best = np.inf
        for _ in range(2):
            t0 = time.perf_counter()
            c.circuit.simulate(X, return_all=True)
            c.rule(X)
            best = min(best, time.perf_counter() - t0)
        times.append(best)
    per_layer_step = times[0] / (400 * c.circuit.depth)
    per_cell = max(times[1] - 20 * c.circuit.depth * per_layer_step, 0.0) / (
        20 * 2048 * c.circuit.n_neurons)
    return per_layer_step, per_cell


def scaling_rows(max_m: int = DEFAULT_MAX_M, big=BIG, check: bool = True,
                 on_check=None, checks: list[Check] | None = None) -> list[dict]:
    """One row per ``m`` with the counts of both methods (and of "spiked k ago"), and the
    steps checked and mismatches found; ``on_check(check)`` is called after each check."""
    checks = plan(max_m) if checks is None else checks
    rows = {}
    for c in checks:
        row = rows.setdefault(c.m, {"m": c.m, "built_sa": False,
                                    "steps": 0 if check else None,
                                    "mismatches": 0 if check else None})
        row[f"{c.key}_n"], row[f"{c.key}_w"] = c.circuit.n_neurons, c.circuit.n_weights
        row["built_sa"] |= c.key == "sa"
        if check:
            for res in (check_windows(c.circuit, c.rule, seed=c.m),
                        check_random(c.circuit, c.rule, T=T_RANDOM, seed=c.m)):
                row["steps"] += res.steps
                row["mismatches"] += res.mismatches
        if on_check is not None:
            on_check(c)
    for m, row in rows.items():  # the formulas used beyond must equal the built circuits
        sa_n, sa_w, row["sa_A"] = _spiked_ago_counts(m)
        if row["built_sa"] and (row["sa_n"], row["sa_w"]) != (sa_n, sa_w):
            raise RuntimeError(f"spiked-k-ago counts at m = {m} differ from the formula")
        if (row["base_n"], row["base_w"]) != _baseline_counts_single_window(m, 2):
            raise RuntimeError(f"exact-gap baseline counts at m = {m} differ from the formula")
        row["sa_n"], row["sa_w"] = sa_n, sa_w
    out = list(rows.values())
    for m in big:
        comp = gap_circuit([d == m - 1 for d in range(1, m + 1)])
        bn, bw = _baseline_counts_single_window(m, 2)
        sa_n, sa_w, sa_A = _spiked_ago_counts(m)
        out.append({"m": m, "base_n": bn, "base_w": bw, "comp_n": comp.n_neurons,
                    "comp_w": comp.n_weights, "sa_n": sa_n, "sa_w": sa_w, "sa_A": sa_A,
                    "built_sa": False, "steps": None, "mismatches": None})
    return out


def _plot(rows, path: Path) -> None:
    """Log-log neurons (left) and weights (right) against m."""
    from ..plotting import save, scaling_figure

    save(scaling_figure(rows), path, dpi=100)


def command(out_dir, max_m: int, check: bool) -> str:
    """The ``membra construct scaling`` command line that writes this report."""
    flags = "" if max_m == DEFAULT_MAX_M else (" --full" if max_m == FULL_MAX_M
                                                else f" --max-m {max_m}")
    return (f"membra construct scaling --out-dir {out_dir}{flags}"
            f"{'' if check else ' --no-check'}")


def _progress(checks: list[Check], check: bool, console):
    """Print the number of circuits and the estimated time, then return ``(on_check,
    progress)``: a rich bar whose units are predicted seconds, so its remaining-time column
    refines the estimate as the checks run."""
    if not check:
        console.print(f"scaling: {len(checks)} circuits to build (no check)")
        return None, None
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    per_layer_step, per_cell = calibrate()
    cost = {id(c): c.cost(per_layer_step, per_cell) for c in checks}
    console.print(f"scaling: {len(checks)} circuits to check (m = 2..{checks[-1].m}), "
                  f"{sum(c.steps for c in checks):,} grid steps; estimated "
                  f"{sum(cost.values()):.0f} s on this machine")
    prog = Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.fields[done]}/{task.fields[n]} circuits"),
                    TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                    console=console)
    task = prog.add_task("checking", total=sum(cost.values()), done=0, n=len(checks))
    done = [0]

    def on_check(c: Check) -> None:
        done[0] += 1
        prog.update(task, advance=cost[id(c)], done=done[0],
                    description=f"m = {c.m:>2} {c.key:<4}")

    return on_check, prog


def _precision_note(m: int) -> str:
    """The read weight and margin of the compact detector of gap ``m - 1`` (exact)."""
    from .compact import LAM, LOAD

    d = m - 1
    r = 1 - LOAD * LAM ** d * (1 + LAM) / 2
    margin = float(LOAD * LAM ** d * (1 - LAM) / 2)
    return (f"the read weight of the detector of gap d is r_d = 1 - c lam^d (1 + lam)/2 with "
            f"c = {LOAD} and lam = {LAM}, an exact rational with denominator "
            f"2^{r.denominator.bit_length() - 1} at m = {m}, and its margin "
            f"c lam^d (1 - lam)/2 = {margin:.2g} shrinks as lam^d")


def write_report(out_dir="reports", max_m: int = DEFAULT_MAX_M, check: bool = True,
                 progress: bool = True) -> Path:
    """Write ``construct_scaling.md`` and ``construct_scaling.png`` into ``out_dir``; with
    ``progress``, print the number of circuits and the estimated time first, then a bar."""
    from rich.console import Console

    checks = plan(max_m)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    console = Console(quiet=not progress)
    on_check, prog = _progress(checks, check, console)
    t0 = time.perf_counter()
    if prog is not None:
        with prog:
            rows = scaling_rows(max_m, check=check, on_check=on_check, checks=checks)
    else:
        rows = scaling_rows(max_m, check=check, checks=checks)
    wall = time.perf_counter() - t0
    _plot(rows, out_dir / "construct_scaling.png")
    checked = [r for r in rows if r["steps"]]
    lines = [
        "# membra.construct: neurons and weights against the memory m",
        "",
        f"Generated by `{command(out_dir, max_m, check)}` (membra.construct.scaling); "
        f"`--full` checks up to m = {FULL_MAX_M} (about 5 minutes of CPU).",
        "",
        "- exact gap: `y[t] = x[t] x[t-k]` with no spike in between, `m = k + 1` "
        "(\"the previous input spike was exactly k steps ago\").",
        "- spiked k ago: `y[t] = x[t] x[t-k]`, anything in between (baseline only).",
        f"- For m = 2..{max_m} the exact-gap circuits of both methods (and the spiked-k-ago "
        f"baseline up to m = {min(MAX_SA_M, max_m)}) were built"
        + (", and each was checked: every window after random prefixes of length 0..2m, "
           f"plus 9 random trains of {T_RANDOM} steps (rates 0.1/0.5/0.9)." if check else
           " (not checked in this run: --no-check).")
        + " Beyond, compact circuits are built and baseline counts are the proved formulas "
        "2m+3+A and 3+6m+A(2m+1) (equal to the built circuits wherever both exist).",
        "",
        "| m | baseline neurons | baseline weights | compact neurons | compact weights | "
        f"spiked-k-ago baseline neurons / weights (A; built for m <= {min(MAX_SA_M, max_m)}, "
        "formula beyond) | steps checked | mismatches |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sa = (f"{r['sa_n']} / {r['sa_w']} ({r['sa_A']})" if r["m"] <= 16 else
              f"2^{r['m'] - 2} + {2 * r['m'] + 3} / ~{r['sa_w']:.2e} (2^{r['m'] - 2})")
        steps = r["steps"] if r["steps"] is not None else "-"
        bad = r["mismatches"] if r["mismatches"] is not None else "-"
        lines.append(f"| {r['m']} | {r['base_n']} | {r['base_w']} | {r['comp_n']} | "
                     f"{r['comp_w']} | {sa} | {steps} | {bad} |")
    total = sum(r["steps"] for r in checked)
    bad = sum(r["mismatches"] for r in checked)
    summary = (f"Total: {total:,} grid steps checked, {bad} mismatches ({len(checks)} "
               f"circuits, {wall:.0f} s on the machine that wrote this report)." if check else
               "Generated with --no-check: the circuits were built but not checked here.")
    lines += [
        "",
        summary,
        "",
        "![neurons and weights vs m](construct_scaling.png)",
        "",
        "These are membra's own constructions and bounds (proofs in docs/construct.md): the "
        "compact circuit has 7 + 4K neurons for a gap rule with K >= 1 boundaries (15 neurons and "
        "41 weights for every exact-gap rule with m >= 3), the baseline 2nm + 3 + A neurons "
        "(2m + 4 for one exact-gap window). For general input-dominated rules (e.g. spiked k "
        "ago, A = 2^(m-2)) membra has no construction whose size grows more slowly than the "
        "baseline's: see docs/construct.md, \"No smaller construction for general rules "
        "(open)\".",
        "",
        "The paper (Hundrieser, Tuchel, Kong, Schmidt-Hieber, arXiv:2512.16872) is known here "
        "only from its abstract, which says its results are \"fully quantitative, "
        "constructive, and near-optimal in the number of required weights and neurons\" and "
        "gives no order of growth; no bound of the paper is plotted or claimed.",
        "",
        f"The compact counts are independent of m, the weights' precision is not: "
        f"{_precision_note(rows[-1]['m'])}. "
        "Stored exactly, the compact circuit takes a number of bits that grows linearly with "
        "m; float64 rounds the weights and still gives the exact spikes, because the margin "
        "stays far above the rounding error.",
        "",
    ]
    path = out_dir / "construct_scaling.md"
    path.write_text("\n".join(lines))
    return path
