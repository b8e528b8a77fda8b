"""BatchNorm folding and the value checks that precede it.

:func:`fold_bn` folds every BatchNorm into the Conv/Linear before it:
``g = gamma / sqrt(var + eps)``, ``W' = W * g`` (per output channel),
``b' = (b - mu) * g + beta``; :func:`check_values` refuses NaN/inf and impossible values
first, naming the layer."""

from __future__ import annotations

import copy

import torch
import torch.fx as fx
from torch import nn

from .graph import NORMS, WEIGHTS, InvalidValueError, UnsupportedLayerError, trace, unshare
from .qcfs import QCFS

__all__ = ["fold_bn", "check_values"]


def _folded(weight_module: nn.Module, bn: nn.Module) -> nn.Module:
    """A copy of ``weight_module`` with ``bn`` (eval statistics) folded in (float64)."""
    m = copy.deepcopy(weight_module)
    w = m.weight.detach().double()
    b = m.bias.detach().double() if m.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
    g = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(b)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(b)
    scale = g / torch.sqrt(bn.running_var.double() + bn.eps)
    shape = (-1,) + (1,) * (w.dim() - 1)
    dtype = m.weight.dtype
    m.weight = nn.Parameter((w * scale.view(shape)).to(dtype))
    m.bias = nn.Parameter(((b - bn.running_mean.double()) * scale + beta).to(dtype))
    return m


def fold_bn(model: nn.Module) -> fx.GraphModule:
    """A traced copy of ``model`` (eval mode) with every BatchNorm folded into the Conv/Linear
    that feeds it. A BN not directly after a Conv/Linear (or after one with other users) raises
    :class:`UnsupportedLayerError`; NaN/inf or impossible values raise
    :class:`InvalidValueError` (:func:`check_values`)."""
    check_values(model)
    gm = unshare(trace(copy.deepcopy(model)).eval())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), NORMS):
            continue
        bn = gm.get_submodule(node.target)
        src = node.args[0]
        ok = isinstance(src, fx.Node) and src.op == "call_module" \
            and isinstance(gm.get_submodule(src.target), WEIGHTS) and len(src.users) == 1
        if not ok:
            raise UnsupportedLayerError(str(node.target), type(bn).__name__,
                                        "a BatchNorm must directly follow a Conv/Linear (whose "
                                        "output feeds nothing else) to be folded")
        if bn.running_mean is None:
            raise UnsupportedLayerError(str(node.target), type(bn).__name__,
                                        "track_running_stats=False cannot be folded")
        parent, _, name = str(src.target).rpartition(".")
        owner = gm.get_submodule(parent) if parent else gm
        setattr(owner, name, _folded(gm.get_submodule(src.target), bn))
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm


def _nonfinite(path: str, m: nn.Module, tensors: dict) -> None:
    for key, t in tensors.items():
        if t is None:
            continue
        bad = int((~torch.isfinite(t.detach())).sum())
        if bad:
            raise InvalidValueError(path, type(m).__name__,
                                    f"{key} has {bad} NaN/inf value(s) of {t.numel()}: the "
                                    "model is corrupted (a NaN makes the ANN's output NaN); "
                                    "restore or retrain it")


def check_values(model: nn.Module) -> None:
    """Refuse values that have no spiking equivalent, naming the layer
    (:class:`InvalidValueError`): NaN/inf in a Conv/Linear weight or bias or in a BatchNorm's
    affine parameters or running statistics; a BN with ``running_var < 0`` or ``running_var +
    eps <= 0`` (it divides by ``sqrt(var + eps)``); a QCFS with ``lam`` not finite or ``<= 0``,
    or ``L`` not an int ``>= 1``."""
    for path, m in model.named_modules():
        path = path or type(model).__name__
        if isinstance(m, WEIGHTS):
            _nonfinite(path, m, {"weight": m.weight, "bias": m.bias})
        elif isinstance(m, NORMS):
            _nonfinite(path, m, {"weight": m.weight, "bias": m.bias,
                                 "running_mean": m.running_mean, "running_var": m.running_var})
            if not (isinstance(m.eps, (int, float)) and 0 <= m.eps < float("inf")):
                raise InvalidValueError(path, type(m).__name__,
                                        f"eps must be a finite number >= 0, got {m.eps!r}")
            var = m.running_var
            if var is None:
                continue
            if bool((var < 0).any()) or bool((var + m.eps <= 0).any()):
                bad = int(((var < 0) | (var + m.eps <= 0)).sum())
                raise InvalidValueError(
                    path, type(m).__name__,
                    f"running_var must be >= 0 with running_var + eps > 0, but {bad} of "
                    f"{var.numel()} channel(s) are not (min {float(var.min()):.3g}, eps "
                    f"{m.eps:g}); the ANN would divide by sqrt(var + eps) and give inf/NaN: "
                    "the BatchNorm statistics are corrupted")
        elif isinstance(m, QCFS):
            lam = torch.as_tensor(m.lam).detach().double()
            bad = ~((lam > 0) & (lam < float("inf")))
            if bool(bad.any()):
                got = float(lam[bad][0]) if lam.dim() else float(lam)
                raise InvalidValueError(path, "QCFS", f"lam (the clip value, threshold of the "
                                        f"spiking neuron) must be finite and > 0, got {got!r}"
                                        + (f" ({int(bad.sum())} of {lam.numel()} channels)"
                                           if lam.dim() else ""))
            if isinstance(m.L, bool) or not isinstance(m.L, int) or m.L < 1:
                raise InvalidValueError(path, "QCFS", f"L (the level, spikes per window) must "
                                        f"be an int >= 1, got {m.L!r}")
