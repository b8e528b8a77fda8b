"""Stateless layers over time-first sequences, readout module and optimizer groups."""

from __future__ import annotations

import torch
from torch import nn

from ..functional.readout import check_readout, readout

__all__ = ["TimeDistributed", "Readout", "param_groups"]


class TimeDistributed(nn.Module):
    """Run a stateless ``module`` (Conv2d, BatchNorm2d, Linear, pooling, Flatten ...) on every
    time step at once by folding time into batch: ``[T, B, ...] -> [T*B, ...] -> [T, B, ...]``.

    BatchNorm therefore normalises over time and batch together. Layers that already act on
    the last dimension (``nn.Linear``) or on ``dim>=2`` (``nn.Flatten(2)``) need no wrapper;
    spiking layers (:class:`LIF`, :class:`IF`) take ``[T, B, ...]`` directly, so a whole net is
    a plain ``nn.Sequential``.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"TimeDistributed wraps an nn.Module, got {type(module).__name__}")
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ValueError("TimeDistributed expects [T, B, ...], got "
                             + (f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor)
                                else type(x).__name__))
        T, B = x.shape[:2]
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, (T, B))


class Readout(nn.Module):
    """Module form of :func:`membra.readout`: ``"mean"`` | ``"last"`` | ``"per_step"``."""

    def __init__(self, mode: str = "mean"):
        super().__init__()
        check_readout(mode)
        self.mode = mode

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        return readout(outputs, self.mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_NO_DECAY_NAMES = ("bias", "init_potential", "tau")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer groups ``[decayed, undecayed]``: weight decay only on weight matrices and
    kernels; initial potentials, time constants, norm parameters and biases get none
    (decay would pull a learnable ``V_0`` back to the zero baseline)."""
    if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay!r}")
    from .neurons import SpikingNeuron

    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            if isinstance(module, (_NORMS, SpikingNeuron)) or name in _NO_DECAY_NAMES \
                    or name.endswith(_NO_DECAY_NAMES) or p.dim() <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
    return [{"params": decay, "weight_decay": float(weight_decay)},
            {"params": no_decay, "weight_decay": 0.0}]
