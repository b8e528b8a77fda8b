r"""Readouts of per-step outputs ``O[T, B, K]``.

- ``"mean"``:     :math:`\frac1T \sum_t O_t`  (rate / mean-output readout)
- ``"last"``:     :math:`O_T`                 (last-time-step, LTS)
- ``"per_step"``: ``O`` unchanged, ``[T, B, K]``
"""

from __future__ import annotations

import torch

__all__ = ["READOUTS", "readout", "check_readout"]

READOUTS = ("mean", "last", "per_step")


def check_readout(mode: str) -> None:
    if mode not in READOUTS:
        raise ValueError(f"readout mode={mode!r} is not known; choose one of {list(READOUTS)}")


def readout(outputs: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """Reduce time-first outputs ``[T, B, ...]`` by ``mode`` (see the module docstring)."""
    check_readout(mode)
    if not isinstance(outputs, torch.Tensor) or outputs.dim() < 2:
        raise ValueError(
            "readout expects time-first outputs [T, B, ...], got "
            + (f"shape {tuple(outputs.shape)}" if isinstance(outputs, torch.Tensor)
               else type(outputs).__name__)
        )
    if mode == "mean":
        return outputs.mean(0)
    if mode == "last":
        return outputs[-1]
    return outputs
