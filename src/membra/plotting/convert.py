"""Figures of the conversion report (``membra convert report``), from its per-stage results
(``report.json``: one dict per stage with ``stage``, ``sum_L``, ``naive`` and ``pascal``)."""

from __future__ import annotations

from .core import new_figure

__all__ = ["naive_curve_figure", "layers_figure", "stages_figure", "latency_figure"]


def naive_curve_figure(results: list[dict]):
    """Naive accuracy vs T (log axis) per stage, the ANN's accuracy as a line and the PASCAL
    point at its time-step count."""
    fig, ax = new_figure(figsize=(6.4, 4))
    for i, r in enumerate(results):
        color = f"C{i}"
        acc = [100 * a for a in r["naive"]["acc_per_T"]]
        ax.plot(range(1, len(acc) + 1), acc, color=color,
                label=f"naive IF, {r['stage']} L (sum {r['sum_L']})")
        ax.axhline(100 * r["pascal"]["ann_acc"], color=color, ls=":", lw=1,
                   label=f"QCFS ANN, {r['stage']}")
        ax.plot([r["pascal"]["time_steps"]], [100 * r["pascal"]["snn_acc"]], "*", ms=14,
                color=color, mec="k", label=f"PASCAL, {r['stage']} "
                f"({r['pascal']['time_steps']} steps)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("naive conversion approaches the ANN; PASCAL equals it")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _grouped_bars(ax, results, keep, value, label_of) -> None:
    """One bar group per report row that ``keep`` accepts, one bar per stage."""
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        rows = [x for x in r["pascal"]["report"]["rows"] if keep(x)]
        xs = range(len(rows))
        ax.bar([x + i * width for x in xs], [value(x) for x in rows], width, label=r["stage"])
        ax.set_xticks([x + width * (len(results) - 1) / 2 for x in xs],
                      [label_of(x) for x in rows], rotation=30, fontsize=8)


def layers_figure(results: list[dict]):
    """Spikes per neuron layer and SOPs per weight layer (PASCAL, per sample), per stage."""
    fig, (a1, a2) = new_figure(1, 2, figsize=(10, 3.8))
    _grouped_bars(a1, results, lambda x: x["kind"] == "neuron", lambda x: x["spikes"],
                  lambda x: f"{x['layer']}")
    _grouped_bars(a2, results, lambda x: x["kind"] != "neuron",
                  lambda x: x.get("sops", 0.0) + x.get("macs", 0.0),
                  lambda x: f"{x['layer']}" + (" (MACs)" if "macs" in x else ""))
    a1.set_title("spikes per sample, per neuron layer")
    a2.set_title("SOPs per sample, per weight layer")
    for a in (a1, a2):
        a.legend(fontsize=8)
        a.grid(axis="y", alpha=0.3)
    return fig


def stages_figure(results: list[dict]):
    """Uniform L vs AL: sum of L, time steps, spikes, SOPs and energy relative to the first
    stage, and each stage's PASCAL accuracy."""
    base = results[0]
    keys = [("sum L", lambda r: r["sum_L"]),
            ("time steps", lambda r: r["pascal"]["time_steps"]),
            ("spikes", lambda r: r["pascal"]["report"]["spikes"]),
            ("SOPs", lambda r: r["pascal"]["report"]["sops"]),
            ("energy", lambda r: r["pascal"]["report"]["energy_j"])]
    fig, (a1, a2) = new_figure(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        vals = [f(r) / f(base) for _, f in keys]
        a1.bar([k + i * width for k in range(len(keys))], vals, width, label=r["stage"])
        a2.bar([i], [100 * r["pascal"]["snn_acc"]], color=f"C{i}")
    a1.set_xticks([k + width * (len(results) - 1) / 2 for k in range(len(keys))],
                  [k for k, _ in keys])
    a1.set_ylabel("relative to uniform L")
    a1.legend(fontsize=8)
    a2.set_xticks(range(len(results)), [r["stage"] for r in results])
    lo = min(100 * r["pascal"]["snn_acc"] for r in results)
    a2.set_ylim(max(0, lo - 5), 100)
    a2.set_title("PASCAL accuracy (%)")
    return fig


def latency_figure(results: list[dict]):
    """Per dataset: naive conversion's agreement with the ANN's predictions vs T (log axis),
    one curve per (depth, levels), with PASCAL's two step counts on the 100 % line: 1 + ΣL
    (star) and the per-layer T_eff (open circle)."""
    datasets = sorted({r["dataset"] for r in results})
    fig, axes = new_figure(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for i, r in enumerate(x for x in results if x["dataset"] == ds):
            color, c = f"C{i}", r["counts"]
            agree = [100 * a for a in r["naive"]["agree_per_T"]]
            ax.plot(range(1, len(agree) + 1), agree, color=color,
                    label=f"depth {r['depth']}, {r['setting']}")
            ax.plot([c["total"]], [100], "*", ms=12, color=color, mec="k")
            ax.plot([c["effective"]], [100], "o", ms=7, mfc="none", color=color)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("time steps T (naive); PASCAL: * = 1 + ΣL, o = T_eff")
        ax.set_ylabel("same prediction as the ANN (%)")
        ax.set_title(ds)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return fig
