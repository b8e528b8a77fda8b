"""Shared plumbing of the fused backends: flatten ``x[T, *N]`` to ``[T, M]``, broadcast
``v0`` to ``[M]`` and make ``tau`` a 0-d tensor, all differentiably, so that autograd reduces
the gradients back to the caller's shapes (``v0``'s broadcast dims are summed)."""

from __future__ import annotations

import math

import torch


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The potential is kept in float64 for float64 input, else in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def flatten_inputs(x: torch.Tensor, v0: torch.Tensor, tau):
    """``(x2 [T, M] contiguous, v [M] state dtype, tau 0-d state dtype)``; tau is 1 for IF."""
    acc = state_dtype(x.dtype)
    shape = x.shape[1:]
    m = math.prod(shape)
    x2 = x.reshape(x.shape[0], m).contiguous()
    v = v0.to(acc).expand(shape).reshape(m).contiguous()
    if tau is None:
        tau_t = torch.ones((), dtype=acc, device=x.device)
    elif isinstance(tau, torch.Tensor):
        tau_t = tau.to(device=x.device, dtype=acc).reshape(())
    else:
        tau_t = torch.full((), float(tau), dtype=acc, device=x.device)
    return x2, v, tau_t
