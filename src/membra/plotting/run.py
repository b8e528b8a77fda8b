"""Figures of a training run, drawn from its metric history (one dict per finished epoch, as
in ``metrics.jsonl``) and its learned initial potentials."""

from __future__ import annotations

import numpy as np

from .core import accuracy_limits, integer_ticks, new_figure

__all__ = ["curves_figure", "per_step_figure", "firing_rate_figure", "init_potential_figure",
           "FAINT_EPOCHS"]

FAINT_EPOCHS = 5  # earlier epochs drawn as faint lines behind the last one


def _pct(values) -> list[float]:
    return [100 * float(v) for v in values]


def curves_figure(history: list[dict]):
    """Loss (left) and accuracy in % (right) per epoch: train, test mean readout, test last
    step. Epoch ticks are integers; the accuracy axis follows :func:`accuracy_limits`."""
    fig, (ax1, ax2) = new_figure(1, 2, figsize=(10, 3.8))
    ep = [m["epoch"] for m in history]
    ax1.plot(ep, [m["train_loss"] for m in history], label="train")
    ax1.plot(ep, [m["test_loss"] for m in history], label="test")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    acc = {"train": _pct(m["train_acc"] for m in history),
           "test, mean readout": _pct(m["test_acc_mean"] for m in history),
           "test, last step": _pct(m["test_acc_last"] for m in history)}
    for (label, ys), style in zip(acc.items(), ("-", "-", "--"), strict=True):
        ax2.plot(ep, ys, style, label=label)
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy",
            ylim=accuracy_limits([v for ys in acc.values() for v in ys]))
    for ax in (ax1, ax2):
        integer_ticks(ax.xaxis, ep)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def per_step_figure(history: list[dict], num_classes: int | None = None):
    """Test accuracy of each time step alone and of the mean readout over steps ``1..t`` at
    the last epoch; the first :data:`FAINT_EPOCHS` earlier epochs' step-alone curves as
    faint lines; a dotted chance line at ``100 / num_classes`` % when ``num_classes`` is
    given. The y-axis follows :func:`accuracy_limits` over everything drawn, chance included."""
    fig, ax = new_figure(figsize=(5.5, 3.8))
    last = history[-1]
    steps = list(range(1, len(last["test_acc_per_step"]) + 1))
    drawn = []
    early = history[:-1][:FAINT_EPOCHS]
    for i, m in enumerate(early):
        ys = _pct(m["test_acc_per_step"])
        drawn += ys
        label = (f"epochs {early[0]['epoch']}-{early[-1]['epoch']}, step t alone"
                 if len(early) > 1 else f"epoch {m['epoch']}, step t alone") if i == 0 else None
        ax.plot(steps, ys, "-", color="tab:blue", alpha=0.2, lw=1, label=label)
    for key, style, label in (("test_acc_per_step", "o-", "step t alone"),
                              ("test_acc_cumulative", "s--", "mean of steps 1..t")):
        ys = _pct(last[key])
        drawn += ys
        ax.plot(steps, ys, style, label=label)
    if num_classes:
        chance = 100 / num_classes
        drawn.append(chance)
        ax.axhline(chance, color="0.4", ls=":", lw=1, label=f"chance ({chance:.3g}%)")
    ax.set(xlabel="time step t", ylabel="test accuracy (%)", xticks=steps,
           ylim=accuracy_limits(drawn), title=f"per-step accuracy (epoch {last['epoch']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def firing_rate_figure(history: list[dict]):
    """Mean test firing rate (spikes per neuron per step) of each spiking layer per epoch;
    ``None`` when the history records no rates."""
    layers = list(history[-1].get("firing_rate", {}))
    if not layers:
        return None
    fig, ax = new_figure(figsize=(5.5, 3.8))
    ep = [m["epoch"] for m in history]
    for name in layers:
        ax.plot(ep, [m.get("firing_rate", {}).get(name, float("nan")) for m in history],
                label=name)
    ax.set(xlabel="epoch", ylabel="spikes per neuron per step",
           title="firing rate per spiking layer (test)")
    integer_ticks(ax.xaxis, ep)
    ax.legend(fontsize="small")
    return fig


def init_potential_figure(v0: dict, *, v_th=1.0, init_range=(0.4, 0.6), title=None,
                          bins: int = 40):
    """Histogram of initial potentials ``V_0`` per layer (``{layer: values}``), with the
    initialisation band ``U(init_range)`` shaded, the threshold ``v_th`` (a number or
    ``{layer: number}``) as a red line and the mean as a dotted line."""
    fig, axes = new_figure(1, len(v0), figsize=(4 * len(v0), 3.4), squeeze=False)
    lo, hi = init_range
    for ax, (name, values) in zip(axes[0], v0.items(), strict=True):
        v = np.asarray(values, dtype=float).ravel()
        th = float(v_th[name] if isinstance(v_th, dict) else v_th)
        ax.axvspan(lo, hi, color="0.85", zorder=0, label=f"init U({lo:g}, {hi:g})")
        ax.hist(v, bins=bins, color="tab:purple", alpha=0.85)
        ax.axvline(th, color="tab:red", lw=1.5, label=f"threshold {th:g}")
        ax.axvline(float(v.mean()), color="k", ls=":", label=f"mean {v.mean():.3f}")
        ax.set_title(f"{name}: {v.size} neurons\nmean {v.mean():.3f}, std {v.std():.3f}",
                     fontsize=9)
        ax.set(xlabel="initial potential V0", ylabel="neurons")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
