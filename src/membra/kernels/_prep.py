"""Shared plumbing of the fused backends: flatten ``x[T, *N]`` to ``[T, M]``, broadcast
``v0`` to ``[M]`` and make ``tau`` a 0-d tensor, all differentiably, so that autograd reduces
the gradients back to the caller's shapes (``v0``'s broadcast dims are summed)."""

from __future__ import annotations

import math

import torch

#: neurons from which a broadcast ``v0``'s copy is worth the pool (1 MiB of float32, the cpu
#: pool's own threshold; below it the allocator's Python bookkeeping costs more per call)
STATE_POOL_MIN = 1 << 18


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The potential is kept in float64 for float64 input, else in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def tau_tensor(tau, dtype: torch.dtype, device) -> torch.Tensor:
    """``tau`` (``None`` for IF: 1, a number or a tensor) as a 0-d tensor of ``dtype``."""
    if tau is None:
        return torch.ones((), dtype=dtype, device=device)
    if isinstance(tau, torch.Tensor):
        return tau.to(device=device, dtype=dtype).reshape(())
    return torch.full((), float(tau), dtype=dtype, device=device)


def flatten_inputs(x: torch.Tensor, v0: torch.Tensor, tau, *, tau_as_tensor: bool = True,
                   new=None):
    """``(x2 [T, M] contiguous, v [M] state dtype, tau 0-d state dtype)``; tau is 1 for IF.
    With ``tau_as_tensor=False`` a number (or ``None``) stays as it is (:func:`tau_tensor`
    converts it when needed). ``new(shape, dtype)``, when given, allocates the copy of a
    broadcast ``v0`` (the cpu backend's pool: no fresh pages per call)."""
    acc = state_dtype(x.dtype)
    shape = x.shape[1:]
    m = math.prod(shape)
    x2 = x.reshape(x.shape[0], m).contiguous()
    v = v0.to(acc).expand(shape)
    if v.is_contiguous() or new is None or m < STATE_POOL_MIN:
        v = v.reshape(m).contiguous()
    else:
        v = new(tuple(shape), acc).copy_(v).view(m)
    if tau_as_tensor or isinstance(tau, torch.Tensor):
        tau = tau_tensor(tau, acc, x.device)
    return x2, v, tau
