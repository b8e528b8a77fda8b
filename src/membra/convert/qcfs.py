r"""The QCFS activation (quantization-clip-floor-shift) and the residual block of convertible
ANNs.

With a trainable clip value :math:`\lambda > 0` and an integer level :math:`L \ge 1`, the
quantum is :math:`\theta = \lambda / L` and

.. math::

    n = \mathrm{clip}(\lfloor z \cdot L/\lambda + 1/2 \rfloor, 0, L), \qquad
    \mathrm{QCFS}(z) = n \cdot \lambda / L .

``n`` is the spike count the converted IF neuron emits. The float expression is fixed (it is
the one the count-domain SNN reuses, so the two are bitwise equal): ``n = clamp(floor(z *
(L / lam) + 0.5), 0, L)``, ``out = n * (lam / L)``, where ``L / lam`` is one correctly rounded
division (:func:`qcfs_scale`), so that it is exact whenever ``lam / L`` is a power of two and
exact ties then round up as the definition says. The gradient is a straight-through estimate
of ``floor`` only (identity), autograd through the rest: ``d out/d z = 1`` inside the clip,
``d out/d lam = (out - z)/lam`` inside, 1 where saturated at ``lam`` and 0 where clamped at 0.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["qcfs_scale", "qcfs_count", "qcfs", "QCFS", "Residual", "replace_relu", "set_L", "get_L",
           "qcfs_layers"]


def _check_L(L) -> int:
    if isinstance(L, bool) or not isinstance(L, int) or L < 1:
        raise ValueError(f"L (quantization level) must be an int >= 1, got {L!r}")
    return L


def qcfs_scale(lam: torch.Tensor | float, L: int) -> torch.Tensor | float:
    """``L / lam`` as one correctly rounded division (PyTorch's ``L / tensor`` computes
    ``L * (1 / tensor)``, which rounds twice: ``41 / 5.125`` gives 7.9999995 in float32)."""
    if isinstance(lam, torch.Tensor):
        return torch.full_like(lam, L) / lam
    return L / lam


def qcfs_count(z: torch.Tensor, lam: torch.Tensor | float, L: int) -> torch.Tensor:
    """Integer spike count ``clamp(floor(z * (L / lam) + 0.5), 0, L)`` (no gradient)."""
    return torch.clamp(torch.floor(z * qcfs_scale(lam, L) + 0.5), 0, L)


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.floor(x)

    @staticmethod
    def backward(ctx, g):
        return g


def qcfs(z: torch.Tensor, lam: torch.Tensor, L: int) -> torch.Tensor:
    """``QCFS(z) = clamp(floor(z * (L / lam) + 0.5), 0, L) * (lam / L)`` with a
    straight-through ``floor``; same float operations as :func:`qcfs_count`."""
    n = torch.clamp(_FloorSTE.apply(z * qcfs_scale(lam, L) + 0.5), 0, L)
    return n * (lam / L)


class QCFS(nn.Module):
    """QCFS activation with a trainable scalar clip value ``lam`` (replaces a ReLU).

    Args:
        L: quantization level (spikes per window of the converted neuron), int >= 1.
        lam_init: initial clip value (QCFS reference: 8.0).
        trainable: whether ``lam`` is an ``nn.Parameter``.
    """

    def __init__(self, L: int = 8, lam_init: float = 8.0, trainable: bool = True):
        super().__init__()
        self.L = _check_L(L)
        if not isinstance(lam_init, (int, float)) or not lam_init > 0:
            raise ValueError(f"lam_init must be a positive number, got {lam_init!r}")
        lam = torch.tensor(float(lam_init))
        if trainable:
            self.lam = nn.Parameter(lam)
        else:
            self.register_buffer("lam", lam)

    @property
    def theta(self) -> torch.Tensor:
        """The quantum ``lam / L`` (value of one spike)."""
        return self.lam / self.L

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return qcfs(z, self.lam, self.L)

    def extra_repr(self) -> str:
        lam = f"{self.lam.item():.4g}" if self.lam.dim() == 0 else \
            f"[{self.lam.numel()} channels, max {self.lam.max().item():.4g}]"
        return f"L={self.L}, lam={lam}"


class Residual(nn.Module):
    """``y = body(x) + shortcut(x)`` (identity shortcut when ``shortcut`` is None). In a
    convertible net it must feed a :class:`QCFS` or be the output."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def _level_for(path: str, L) -> int:
    if isinstance(L, dict):
        if path not in L:
            raise ValueError(f"no L given for activation {path!r}; L maps {sorted(L)}")
        return _check_L(L[path])
    return _check_L(L)


def replace_relu(model: nn.Module, L: int | dict = 8, lam_init: float = 8.0) -> nn.Module:
    """Replace every ``nn.ReLU`` module of ``model`` (in place) by :class:`QCFS` and return the
    model. ``L`` is one level for all or ``{module path: level}``. Functional ``F.relu`` calls
    cannot be replaced: define the ReLU as a module."""
    found = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.ReLU):
                path = f"{name}.{child_name}" if name else child_name
                setattr(module, child_name, QCFS(_level_for(path, L), lam_init))
                found.append(path)
    if isinstance(L, dict):
        unknown = sorted(set(L) - set(found))
        if unknown:
            raise ValueError(f"L names {unknown}, which are not ReLU modules; ReLUs: {found}")
    return model


def qcfs_layers(model: nn.Module) -> dict[str, QCFS]:
    """``{path: QCFS module}`` in definition order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, QCFS)}


def get_L(model: nn.Module) -> dict[str, int]:
    """``{path: L}`` of every QCFS layer."""
    return {n: m.L for n, m in qcfs_layers(model).items()}


def set_L(model: nn.Module, L: int | dict) -> nn.Module:
    """Set the level of every QCFS layer (one int, or ``{path: L}`` naming every layer).
    ``lam`` keeps its meaning (the clip value), so fine-tune after a change."""
    layers = qcfs_layers(model)
    if isinstance(L, dict):
        unknown = sorted(set(L) - set(layers))
        if unknown:
            raise ValueError(f"L names {unknown}, which are not QCFS layers; layers: "
                             f"{list(layers)}")
    for path, m in layers.items():
        m.L = _level_for(path, L)
    return model


def qcfs_counts(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """``(model(x), {QCFS call site: count of its input})``: one ANN forward pass recording
    every QCFS call's count ``clamp(floor(z L / lam + 1/2), 0, L)`` (:func:`qcfs_count`). A
    module called once is keyed by its path, the k-th call of a module called several times by
    ``path@k`` (:func:`~membra.convert.graph.call_site_names`)."""
    calls: dict[str, list[torch.Tensor]] = {}
    hooks = [m.register_forward_hook(
        lambda m, a, o, p=p: calls.setdefault(p, []).append(qcfs_count(a[0], m.lam, m.L)))
        for p, m in model.named_modules() if isinstance(m, QCFS)]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    counts = {(p if len(cs) == 1 else f"{p}@{k}"): c
              for p, cs in calls.items() for k, c in enumerate(cs, 1)}
    return out, counts
