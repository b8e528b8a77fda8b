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

Each built-in is a :class:`Surrogate` instance; its ``code`` is the integer the C++ and Triton
kernels evaluate inline, the same formula in every backend. Any other surrogate is
``Surrogate.custom(f)`` (or just the callable ``f``): an elementwise ``f(u)`` whose autograd
derivative is the surrogate gradient; the fused backends evaluate it over all time steps in one
call and feed the resulting tensor to their backward recurrence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

__all__ = [
    "Surrogate",
    "SURROGATES",
    "PRECOMPUTED",
    "as_surrogate",
    "get_surrogate",
    "surrogate_grad",
    "spike",
    "heaviside",
]


#: kernel code of a surrogate whose derivative reaches the fused backward as a tensor
PRECOMPUTED = -1


@dataclass(frozen=True, eq=False)
class Surrogate:
    """A surrogate gradient: the spike is the Heaviside step of ``u = h - v_th``, its backward
    multiplies by :meth:`derivative`.

    A built-in has a closed-form ``grad(u, alpha)``, a ``default_alpha`` and an integer ``code``
    the fused kernels evaluate inline; ``fn(u, alpha)`` is the smooth function it is the
    derivative of. A custom one (:meth:`custom`) is any elementwise ``fn(u) -> Tensor`` whose
    autograd derivative is the surrogate gradient (its value is never used), evaluated over all
    time steps in one call and handed to the fused backward as a tensor.
    """

    name: str
    default_alpha: float | None
    grad: Callable[[torch.Tensor, float], torch.Tensor] | None = None
    function: Callable | None = None
    alpha: float | None = None
    code: int = PRECOMPUTED

    @classmethod
    def custom(cls, fn: Callable[[torch.Tensor], torch.Tensor], name: str | None = None
               ) -> Surrogate:
        """A surrogate from ``fn(u)`` whose autograd derivative is the surrogate gradient."""
        if not callable(fn):
            raise TypeError(f"surrogate function must be callable, got {type(fn).__name__}")
        return cls(name or getattr(fn, "__name__", "custom"), None, None, fn)

    @property
    def builtin(self) -> bool:
        return self.grad is not None

    @property
    def fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``f(u)`` with ``f' = derivative`` (a built-in's alpha bound)."""
        if self.builtin:
            a = self.alpha_or_default(self.alpha)
            return lambda u: self.function(u, a)
        return self.function

    def alpha_or_default(self, alpha: float | None) -> float | None:
        return self.default_alpha if alpha is None else float(alpha)

    def with_alpha(self, alpha: float | None) -> Surrogate:
        """This surrogate with ``alpha`` bound (``None``: the default); only built-ins have
        one."""
        check_alpha(alpha)
        if not self.builtin:
            if alpha is not None:
                raise ValueError(f"alpha={alpha!r} applies to the built-in surrogates "
                                 f"{sorted(SURROGATES)} only; put it into the custom "
                                 f"surrogate {self.name!r} itself")
            return self
        return replace(self, alpha=self.alpha_or_default(alpha))

    def derivative(self, u: torch.Tensor) -> torch.Tensor:
        """``dS/du`` at ``u`` (any shape): the closed form, or the autograd derivative of the
        custom function, one vectorised call over the whole tensor."""
        if self.builtin:
            return self.grad(u, self.alpha_or_default(self.alpha))
        with torch.enable_grad():
            leaf = u.detach().requires_grad_(True)
            y = self.function(leaf)
            if not isinstance(y, torch.Tensor) or y.shape != leaf.shape:
                got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise ValueError(f"surrogate {self.name!r} must map u elementwise to a tensor "
                                 f"of u's shape {tuple(leaf.shape)}, got {got}")
            # the vector-Jacobian product with an expanded 1: no reduction, no [T, M] ones
            ones = torch.ones((), dtype=y.dtype, device=y.device).expand_as(y)
            (d,) = torch.autograd.grad(y, leaf, ones, allow_unused=True)
        return torch.zeros_like(u) if d is None else d.to(u.dtype)


def _sigmoid_grad(u: torch.Tensor, a: float) -> torch.Tensor:
    sg = torch.sigmoid(a * u)
    return a * sg * (1.0 - sg)


def _atan_grad(u: torch.Tensor, a: float) -> torch.Tensor:
    return (a / 2.0) / (1.0 + (math.pi / 2.0 * a * u) ** 2)


def _rectangular_grad(u: torch.Tensor, a: float) -> torch.Tensor:
    return (u.abs() < 1.0 / (2.0 * a)).to(u.dtype) * a


def _triangle_grad(u: torch.Tensor, a: float) -> torch.Tensor:
    return torch.clamp(a - a * a * u.abs(), min=0.0)


def _sigmoid(u, a):
    return torch.sigmoid(a * u)


def _atan(u, a):
    return torch.atan(math.pi / 2.0 * a * u) / math.pi


def _rectangular(u, a):
    return torch.clamp(a * u, -0.5, 0.5)


def _triangle(u, a):
    v = torch.clamp(a * u, -1.0, 1.0)
    return v - 0.5 * v * v.abs()


#: the built-ins; ``code`` is the one table the C++ and Triton kernels use
SURROGATES: dict[str, Surrogate] = {
    s.name: s
    for s in (
        Surrogate("sigmoid", 4.0, _sigmoid_grad, _sigmoid, code=0),
        Surrogate("atan", 2.0, _atan_grad, _atan, code=1),
        Surrogate("rectangular", 1.0, _rectangular_grad, _rectangular, code=2),
        Surrogate("triangle", 1.0, _triangle_grad, _triangle, code=3),
    )
}


def as_surrogate(spec, alpha: float | None = None) -> Surrogate:
    """A :class:`Surrogate` from a built-in name, an instance or a callable ``f(u)``, with
    ``alpha`` bound (built-ins only; ``None``: the surrogate's own or default alpha)."""
    if isinstance(spec, Surrogate):
        s = spec
    elif isinstance(spec, str):
        if spec not in SURROGATES:
            raise ValueError(f"surrogate={spec!r} is not known; choose one of "
                             f"{sorted(SURROGATES)}, a membra.functional.Surrogate or a "
                             "callable f(u)")
        s = SURROGATES[spec]
    elif callable(spec):
        s = Surrogate.custom(spec)
    else:
        raise ValueError(f"surrogate={spec!r} is not known; choose one of {sorted(SURROGATES)}, "
                         "a membra.functional.Surrogate or a callable f(u)")
    if alpha is None and s.alpha is not None:
        return s
    return s.with_alpha(alpha)


def get_surrogate(name) -> Surrogate:
    """Look a surrogate up (a name, an instance or a callable); an unknown name raises
    ``ValueError`` listing the valid ones."""
    return as_surrogate(name)


def check_alpha(alpha: float | None) -> None:
    if alpha is not None and (not isinstance(alpha, (int, float)) or isinstance(alpha, bool)
                              or not alpha > 0 or not math.isfinite(alpha)):
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")


def surrogate_grad(u: torch.Tensor, surrogate="sigmoid", alpha: float | None = None):
    """The surrogate derivative ``dS/du`` of ``surrogate`` at ``u`` (see the module table)."""
    return as_surrogate(surrogate, alpha).derivative(u)


def heaviside(u: torch.Tensor) -> torch.Tensor:
    """:math:`\\Theta(u)`: 1 where ``u >= 0``, 0 where ``u < 0``, NaN where ``u`` is NaN or
    +-inf, in ``u``'s dtype: ``(u >= 0) + (u - u)`` (``u - u`` is 0 for every finite ``u``)."""
    return (u >= 0).to(u.dtype) + (u - u)


class _Spike(torch.autograd.Function):
    """Heaviside forward, surrogate derivative backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, surrogate: Surrogate):
        ctx.save_for_backward(u)
        ctx.surrogate = surrogate
        return heaviside(u)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (u,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(u), None


def spike(u: torch.Tensor, surrogate="sigmoid", alpha: float | None = None) -> torch.Tensor:
    """Spike ``S = Θ(u)`` with the surrogate gradient of ``surrogate`` (a name, a
    :class:`Surrogate` or a callable; ``alpha=None``: its own or default alpha)."""
    return _Spike.apply(u, as_surrogate(surrogate, alpha))
