r"""Losses on per-step outputs ``O[T, B, K]``.

Targets ``y`` are class indices ``[B]`` or soft targets ``[B, K]`` (mixup/cutmix).
:math:`CE(o, q) = -\sum_k q_k \log \mathrm{softmax}(o)_k`; reductions are means over ``B``
(and ``T``).

.. math::
    \mathrm{mean\_ce}(O, y) &= CE(\tfrac1T \textstyle\sum_t O_t,\ y) \\
    \mathrm{lts\_ce}(O, y) &= CE(O_T,\ y) \\
    \mathrm{tet}(O, y, \lambda, \phi) &= (1-\lambda)\,\mathrm{mean}_{t,b}\, CE(O_t, y)
        + \lambda\, \mathrm{mean}_{t,b,k} (O - \phi)^2 \\
    \mathrm{ls\_tet}(O, y, \epsilon) &= \mathrm{mean}_{t,b}\,
        CE(O_t,\ (1-\epsilon)\,q(y) + \epsilon/K)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mean_ce", "lts_ce", "tet", "ls_tet", "LOSSES", "get_loss"]


def _check(outputs: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if not isinstance(outputs, torch.Tensor) or outputs.dim() != 3:
        got = tuple(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs)
        raise ValueError(f"{name}: outputs must be per-step logits [T, B, K], got {got}")
    if not outputs.is_floating_point():
        raise TypeError(f"{name}: outputs must be floating point, got {outputs.dtype}")
    _, B, K = outputs.shape
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"{name}: target must be a tensor, got {type(target).__name__}")
    if target.dim() == 1:
        if target.is_floating_point() or target.dtype == torch.bool:
            raise TypeError(f"{name}: class-index target must be an integer tensor, got "
                            f"{target.dtype}")
        if target.shape[0] != B:
            raise ValueError(f"{name}: target has {target.shape[0]} labels for batch {B}")
        _check_labels(target, K, name)
    elif target.dim() == 2:
        if tuple(target.shape) != (B, K):
            raise ValueError(f"{name}: soft target must be [B, K] = {(B, K)}, got "
                             f"{tuple(target.shape)}")
        if not target.is_floating_point():
            raise TypeError(f"{name}: soft target must be floating point, got {target.dtype}")
    else:
        raise ValueError(f"{name}: target must be [B] class indices or [B, K] soft targets, "
                         f"got shape {tuple(target.shape)}")


def _check_labels(target: torch.Tensor, K: int, name: str) -> None:
    """Class indices must lie in ``[0, K)``, tested as one fused ``any(y < 0 | y >= K)``.

    On the CPU a bad label raises a ValueError naming the range; reading the flag costs no
    device sync there. On CUDA the flag goes to ``torch._assert_async`` (no host sync per
    loss call): a bad label stops the process with a device-side assertion, as
    ``F.one_hot`` itself would. Other devices keep ``F.one_hot``'s own check."""
    if not target.numel():
        return
    bad = ((target < 0) | (target >= K)).any()
    if target.device.type == "cpu":
        if bad:
            raise ValueError(f"{name}: class indices must lie in [0, {K}), got range "
                             f"[{target.min().item()}, {target.max().item()}]")
    elif target.device.type == "cuda":
        torch._assert_async(~bad, f"{name}: class indices must lie in [0, {K})")


def _soft(target: torch.Tensor, K: int, dtype) -> torch.Tensor:
    """``q``: one-hot rows of class indices of any integer dtype, or the soft target itself."""
    return F.one_hot(target.long(), K).to(dtype) if target.dim() == 1 else target.to(dtype)


def _ce(logits: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Mean over leading dims of ``-sum_k q_k log softmax(logits)_k``."""
    return -(q * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def mean_ce(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the time-mean output (the usual rate readout)."""
    _check(outputs, target, "mean_ce")
    return _ce(outputs.mean(0), _soft(target, outputs.shape[-1], outputs.dtype))


def lts_ce(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the last step only (LTS); earlier steps get exactly zero gradient."""
    _check(outputs, target, "lts_ce")
    return _ce(outputs[-1], _soft(target, outputs.shape[-1], outputs.dtype))


def tet(outputs: torch.Tensor, target: torch.Tensor, lam: float = 0.0,
        phi: float = 1.0) -> torch.Tensor:
    """Temporal efficient training: per-step CE plus ``lam`` times the MSE of the logits to
    ``phi``."""
    _check(outputs, target, "tet")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"tet: lam must lie in [0, 1], got {lam!r}")
    q = _soft(target, outputs.shape[-1], outputs.dtype).unsqueeze(0).expand_as(outputs)
    loss = _ce(outputs, q)
    if lam:
        loss = (1.0 - lam) * loss + lam * ((outputs - phi) ** 2).mean()
    return loss


def ls_tet(outputs: torch.Tensor, target: torch.Tensor, eps: float = 0.01) -> torch.Tensor:
    """Label-smoothed TET: per-step CE against ``(1 - eps) q + eps / K``; no MSE term."""
    _check(outputs, target, "ls_tet")
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"ls_tet: eps must lie in [0, 1), got {eps!r}")
    K = outputs.shape[-1]
    q = (1.0 - eps) * _soft(target, K, outputs.dtype) + eps / K
    return _ce(outputs, q.unsqueeze(0).expand_as(outputs))


LOSSES = {"mean_ce": mean_ce, "lts_ce": lts_ce, "tet": tet, "ls_tet": ls_tet}


def get_loss(name: str):
    """A loss by name; unknown names raise ``ValueError`` listing the valid ones."""
    if name not in LOSSES:
        raise ValueError(f"loss={name!r} is not known; choose one of {sorted(LOSSES)}")
    return LOSSES[name]
