"""Metrics on per-step outputs and spikes: per-step accuracy, readout accuracy, firing rates."""

from __future__ import annotations

import torch

from .functional.readout import check_readout, readout

__all__ = ["per_step_accuracy", "readout_accuracy", "firing_rate_stats"]


def _labels(target: torch.Tensor) -> torch.Tensor:
    return target.argmax(-1) if target.dim() == 2 else target


def _check(outputs, target, name):
    if not isinstance(outputs, torch.Tensor) or outputs.dim() != 3:
        got = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs)
        raise ValueError(f"{name}: outputs must be per-step logits [T, B, K], got {got}")
    if not isinstance(target, torch.Tensor) or target.dim() not in (1, 2) or \
            target.shape[0] != outputs.shape[1]:
        got = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target)
        raise ValueError(f"{name}: target must be [B] or [B, K] with B={outputs.shape[1]}, "
                         f"got {got}")


@torch.no_grad()
def per_step_accuracy(outputs: torch.Tensor, target: torch.Tensor, cumulative: bool = False,
                      topk: int = 1) -> torch.Tensor:
    """Accuracy of each time step alone, ``Tensor[T]`` in ``[0, 1]``.

    With ``cumulative=True`` entry ``t`` is the accuracy of the mean readout over steps
    ``1..t`` (what a mean-readout network would score if stopped at ``t``). ``topk=k`` counts
    a hit when the label is among the ``k`` largest logits. Soft targets use their argmax.
    """
    _check(outputs, target, "per_step_accuracy")
    y = _labels(target)
    if cumulative:
        steps = torch.arange(1, outputs.shape[0] + 1, device=outputs.device, dtype=outputs.dtype)
        outputs = outputs.cumsum(0) / steps.view(-1, 1, 1)
    if outputs.shape[1] == 0:
        return outputs.new_zeros(outputs.shape[0])
    top = outputs.topk(topk, dim=-1).indices
    return (top == y.view(1, -1, 1)).any(-1).float().mean(1)


@torch.no_grad()
def readout_accuracy(outputs: torch.Tensor, target: torch.Tensor, mode: str = "mean") -> float:
    """Top-1 accuracy of the ``"mean"`` or ``"last"`` readout."""
    check_readout(mode)
    if mode == "per_step":
        raise ValueError("readout_accuracy needs mode 'mean' or 'last'; use per_step_accuracy")
    _check(outputs, target, "readout_accuracy")
    pred = readout(outputs, mode).argmax(-1)
    return (pred == _labels(target)).float().mean().item() if pred.numel() else 0.0


@torch.no_grad()
def firing_rate_stats(spikes: torch.Tensor) -> dict[str, float]:
    """Firing-rate statistics of spikes ``[T, B, *S]``: mean rate (spikes per neuron per
    step), std and coefficient of variation across neurons, fraction of silent neurons (never
    fire) and saturated neurons (fire every step), and the total spike count."""
    if not isinstance(spikes, torch.Tensor) or spikes.dim() < 2:
        raise ValueError("firing_rate_stats expects spikes [T, B, ...]")
    per_neuron = spikes.float().mean(dim=(0, 1)).flatten()
    mean = per_neuron.mean().item() if per_neuron.numel() else 0.0
    std = per_neuron.std(unbiased=False).item() if per_neuron.numel() else 0.0
    return {
        "rate": mean,
        "rate_std": std,
        "rate_cv": std / mean if mean > 0 else 0.0,
        "silent": (per_neuron == 0).float().mean().item() if per_neuron.numel() else 0.0,
        "saturated": (per_neuron == 1).float().mean().item() if per_neuron.numel() else 0.0,
        "spikes": spikes.float().sum().item(),
    }

from .energy import E_AC, E_MAC, SOPReport, sops  # noqa: E402,F401  (SOPs live in membra.energy)
