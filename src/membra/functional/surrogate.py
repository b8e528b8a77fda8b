r"""Surrogate spike functions.

The forward pass of every spike function is the Heaviside step with *greater-or-equal*:

.. math:: S = \Theta(u) = 1 \text{ if } u \ge 0 \text{ else } 0, \qquad u = H - V_{th}

and NaN where ``u`` is not finite (NaN or +-inf), so that a broken potential is never turned
into a clean 0/1 spike (``docs/kernels.md``, "Non-finite values").

The backward pass replaces :math:`\delta(u)` by a surrogate derivative :math:`\sigma'(u)`:

=============  =========================================================  ==========
name           :math:`\partial S / \partial u`                            default α
=============  =========================================================  ==========
``sigmoid``    :math:`\alpha\,\mathrm{sig}(\alpha u)(1-\mathrm{sig}(\alpha u))`  4.0
``atan``       :math:`(\alpha/2) / (1 + (\tfrac{\pi}{2}\alpha u)^2)`      2.0
``rectangular``  :math:`\alpha \cdot 1\{|u| < 1/(2\alpha)\}`              1.0
``triangle``   :math:`\max(0, \alpha - \alpha^2 |u|)`                     1.0
=============  =========================================================  ==========

:func:`surrogate_grad` is the single definition of each derivative; the autograd function
here and every fused kernel backend compute exactly these formulas.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = [
    "Surrogate",
    "SURROGATES",
    "get_surrogate",
    "surrogate_grad",
    "spike",
    "heaviside",
]


@dataclass(frozen=True)
class Surrogate:
    """A named surrogate derivative ``grad(u, alpha)`` with its default ``alpha``."""

    name: str
    default_alpha: float
    grad: Callable[[torch.Tensor, float], torch.Tensor]

    def alpha_or_default(self, alpha: float | None) -> float:
        return self.default_alpha if alpha is None else float(alpha)


def _sigmoid_grad(u: torch.Tensor, a: float) -> torch.Tensor:
    sg = torch.sigmoid(a * u)
    return a * sg * (1.0 - sg)


def _atan_grad(u: torch.Tensor, a: float) -> torch.Tensor:
    return (a / 2.0) / (1.0 + (math.pi / 2.0 * a * u) ** 2)


def _rectangular_grad(u: torch.Tensor, a: float) -> torch.Tensor:
    return (u.abs() < 1.0 / (2.0 * a)).to(u.dtype) * a


def _triangle_grad(u: torch.Tensor, a: float) -> torch.Tensor:
    return torch.clamp(a - a * a * u.abs(), min=0.0)


SURROGATES: dict[str, Surrogate] = {
    s.name: s
    for s in (
        Surrogate("sigmoid", 4.0, _sigmoid_grad),
        Surrogate("atan", 2.0, _atan_grad),
        Surrogate("rectangular", 1.0, _rectangular_grad),
        Surrogate("triangle", 1.0, _triangle_grad),
    )
}


def get_surrogate(name: str) -> Surrogate:
    """Look a surrogate up by name; an unknown name raises ``ValueError`` listing the valid ones."""
    if isinstance(name, Surrogate):
        return name
    if not isinstance(name, str) or name not in SURROGATES:
        raise ValueError(
            f"surrogate={name!r} is not known; choose one of {sorted(SURROGATES)}"
        )
    return SURROGATES[name]


def check_alpha(alpha: float | None) -> None:
    if alpha is not None and (not isinstance(alpha, (int, float)) or not alpha > 0):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")


def surrogate_grad(u: torch.Tensor, surrogate: str = "sigmoid", alpha: float | None = None):
    """The surrogate derivative ``dS/du`` of ``surrogate`` at ``u`` (see the module table)."""
    s = get_surrogate(surrogate)
    return s.grad(u, s.alpha_or_default(alpha))


def heaviside(u: torch.Tensor) -> torch.Tensor:
    """:math:`\\Theta(u)`: 1 where ``u >= 0``, 0 where ``u < 0``, NaN where ``u`` is NaN or
    +-inf, in ``u``'s dtype: ``(u >= 0) + (u - u)`` (``u - u`` is 0 for every finite ``u``)."""
    return (u >= 0).to(u.dtype) + (u - u)


class _Spike(torch.autograd.Function):
    """Heaviside forward, surrogate derivative backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, surrogate: Surrogate, alpha: float):
        ctx.save_for_backward(u)
        ctx.surrogate = surrogate
        ctx.alpha = alpha
        return heaviside(u)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (u,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(u, ctx.alpha), None, None


def spike(u: torch.Tensor, surrogate: str = "sigmoid", alpha: float | None = None) -> torch.Tensor:
    """Spike ``S = Θ(u)`` with the named surrogate gradient (``alpha=None``: its default)."""
    s = get_surrogate(surrogate)
    check_alpha(alpha)
    return _Spike.apply(u, s, s.alpha_or_default(alpha))
