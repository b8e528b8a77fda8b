"""PNG plots of a run (matplotlib, imported only here; ``pip install membra[plot]``).

- ``curves.png``: training/test loss and accuracy per epoch;
- ``per_step_accuracy.png``: test accuracy of each time step alone and of the mean readout
  over steps ``1..t`` (last epoch);
- ``firing_rate.png``: mean firing rate of each spiking layer per epoch;
- ``init_potential.png``: histogram of the learned initial potentials ``V_0`` per layer
  (only for layers with ``init_potential="learnable"``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["plot_run", "learned_potentials"]


def learned_potentials(model: nn.Module) -> dict[str, torch.Tensor]:
    """Flattened learnable initial potentials by layer name."""
    out = {}
    for name, p in model.named_parameters():
        if name == "init_potential" or name.endswith(".init_potential"):
            out[name.rsplit(".init_potential", 1)[0] or "<model>"] = \
                p.detach().float().cpu().flatten()
    return out


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_run(run_dir, history: list[dict], model: nn.Module | None = None) -> list[Path]:
    """Write the run's plots to ``<run_dir>/plots/``; returns the files written (none when
    matplotlib is missing or there is no history)."""
    if not history:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out = Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)
    ep = [m["epoch"] for m in history]
    written = []

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(ep, [m["train_loss"] for m in history], label="train")
    ax1.plot(ep, [m["test_loss"] for m in history], label="test")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax1.legend()
    ax2.plot(ep, [100 * m["train_acc"] for m in history], label="train")
    ax2.plot(ep, [100 * m["test_acc_mean"] for m in history], label="test, mean readout")
    ax2.plot(ep, [100 * m["test_acc_last"] for m in history], label="test, last step",
             linestyle="--")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax2.legend()
    written.append(_save(fig, out / "curves.png"))
    plt.close(fig)

    last = history[-1]
    steps = list(range(1, len(last["test_acc_per_step"]) + 1))
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(steps, [100 * a for a in last["test_acc_per_step"]], "o-", label="step t alone")
    ax.plot(steps, [100 * a for a in last["test_acc_cumulative"]], "s--",
            label="mean of steps 1..t")
    ax.set(xlabel="time step t", ylabel="test accuracy (%)", xticks=steps,
           title=f"per-step accuracy (epoch {last['epoch']})")
    ax.legend()
    written.append(_save(fig, out / "per_step_accuracy.png"))
    plt.close(fig)

    layers = list(last.get("firing_rate", {}))
    if layers:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for name in layers:
            ax.plot(ep, [m["firing_rate"].get(name, float("nan")) for m in history],
                    label=name)
        ax.set(xlabel="epoch", ylabel="spikes per neuron per step",
               title="firing rate per spiking layer (test)")
        ax.legend(fontsize="small")
        written.append(_save(fig, out / "firing_rate.png"))
        plt.close(fig)

    v0 = learned_potentials(model) if model is not None else {}
    if v0:
        fig, axes = plt.subplots(1, len(v0), figsize=(3.6 * len(v0), 3.4), squeeze=False)
        for ax, (name, v) in zip(axes[0], v0.items(), strict=True):
            ax.hist(v.numpy(), bins=40, color="tab:purple")
            ax.axvline(float(v.mean()), color="k", linestyle=":",
                       label=f"mean {float(v.mean()):.3f}")
            ax.set(xlabel="initial potential V0", ylabel="neurons", title=name)
            ax.legend(fontsize="small")
        written.append(_save(fig, out / "init_potential.png"))
        plt.close(fig)
    return written
