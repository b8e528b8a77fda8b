"""Figures of the conversion report (matplotlib, imported here only)."""

from __future__ import annotations

from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_naive_curve(results: list[dict], path: Path) -> Path:
    """Naive accuracy vs T (log axis) per stage, the ANN's accuracy as a line and the PASCAL
    point at its time-step count."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4))
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_layers(results: list[dict], path: Path) -> Path:
    """Spikes per neuron layer and SOPs per weight layer (PASCAL, per sample), per stage."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        rows = r["pascal"]["report"]["rows"]
        neurons = [x for x in rows if x["kind"] == "neuron"]
        weights = [x for x in rows if x["kind"] != "neuron"]
        xs = range(len(neurons))
        a1.bar([x + i * width for x in xs], [x["spikes"] for x in neurons], width,
               label=r["stage"])
        a1.set_xticks([x + width * (len(results) - 1) / 2 for x in xs],
                      [f"{x['layer']}" for x in neurons], rotation=30, fontsize=8)
        xs = range(len(weights))
        a2.bar([x + i * width for x in xs],
               [x.get("sops", 0.0) + x.get("macs", 0.0) for x in weights], width,
               label=r["stage"])
        a2.set_xticks([x + width * (len(results) - 1) / 2 for x in xs],
                      [f"{x['layer']}" + (" (MACs)" if "macs" in x else "") for x in weights],
                      rotation=30, fontsize=8)
    a1.set_title("spikes per sample, per neuron layer")
    a2.set_title("SOPs per sample, per weight layer")
    for a in (a1, a2):
        a.legend(fontsize=8)
        a.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_stages(results: list[dict], path: Path) -> Path:
    """Uniform L vs AL: sum of L, time steps, spikes and SOPs (relative to uniform) and
    accuracy."""
    plt = _plt()
    base = results[0]
    keys = [("sum L", lambda r: r["sum_L"]),
            ("time steps", lambda r: r["pascal"]["time_steps"]),
            ("spikes", lambda r: r["pascal"]["report"]["spikes"]),
            ("SOPs", lambda r: r["pascal"]["report"]["sops"]),
            ("energy", lambda r: r["pascal"]["report"]["energy_j"])]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [3, 1]})
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
