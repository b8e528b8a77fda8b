"""Graph capture of a convertible ANN (torch.fx) and BN folding.

:func:`capture` traces a model into a flat list of :class:`Op` (topological order) whose kinds
are the supported-layer table of the conversion spec: ``input``, ``weight`` (Linear/Conv),
``qcfs``, ``linear`` (AvgPool, AdaptiveAvgPool, Flatten, Dropout, Identity: applied per time
step), ``maxpool``, ``add`` (residual) and ``output``. Anything else raises
:class:`UnsupportedLayerError` naming its path, type and a hint; nothing is dropped.

:func:`fold_bn` folds every BatchNorm into the Conv/Linear before it:
``g = gamma / sqrt(var + eps)``, ``W' = W * g`` (per output channel),
``b' = (b - mu) * g + beta``.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from ..nn import SpikingNeuron, TimeDistributed
from .qcfs import QCFS, Residual

__all__ = ["UnsupportedLayerError", "InvalidValueError", "Op", "capture", "fold_bn",
           "check_values", "WEIGHTS", "LINEAR_OPS", "AVGPOOLS"]

WEIGHTS = (nn.Linear, nn.Conv1d, nn.Conv2d)
AVGPOOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
LINEAR_OPS = AVGPOOLS + (nn.Flatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
MAXPOOLS = (nn.MaxPool1d, nn.MaxPool2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
_LEAVES = WEIGHTS + LINEAR_OPS + MAXPOOLS + NORMS + (QCFS,)

_HINTS = {
    nn.ReLU: "replace it with membra.convert.replace_relu(model, L=...) and train with QCFS",
    nn.MaxPool2d: "use AvgPool2d before training (naive mode), or convert with mode='pascal' "
                  "with the MaxPool directly after a QCFS",
    nn.GELU: "only QCFS activations convert to spiking neurons",
    nn.LayerNorm: "layer norm does not commute with spike accumulation; use BatchNorm",
    nn.Softmax: "keep the softmax outside the model (the logits are the SNN's output)",
}
_FUNCTIONAL_RELU = ("replace_relu can only replace nn.ReLU modules: define the activation as a "
                    "module (self.act = nn.ReLU() in __init__, x = self.act(x) in forward), "
                    "then membra.convert.replace_relu(model, L=...) and train with QCFS")


class UnsupportedLayerError(ValueError):
    """A layer that cannot be converted exactly: the message names its path, type and a
    hint."""

    def __init__(self, path: str, kind: str, hint: str):
        self.path, self.kind, self.hint = path, kind, hint
        super().__init__(f"cannot convert {path!r} ({kind}): {hint}")


class InvalidValueError(UnsupportedLayerError):
    """A layer whose values have no spiking equivalent (NaN/inf, a negative BN variance,
    ``lam <= 0``): the message names its path, type and the offending values."""


@dataclass
class Op:
    """One captured operation: ``kind``, the module (or function) it runs, the indices of its
    inputs in the op list, and its path in the model."""

    kind: str
    path: str
    inputs: list[int] = field(default_factory=list)
    module: nn.Module | None = None
    fn: object = None


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, (nn.Sequential, Residual)):
            return False
        return isinstance(m, _LEAVES) or not any(True for _ in m.children())


def _refuse_spiking(model: nn.Module) -> None:
    """Already-spiking models (membra.models zoo, membra.nn neurons) are not ANNs."""
    for path, m in model.named_modules():
        if isinstance(m, (SpikingNeuron, TimeDistributed)):
            raise UnsupportedLayerError(
                path or type(model).__name__, type(m).__name__,
                "this is already a spiking (time-first) network; conversion takes an ANN "
                "whose activations are QCFS: build one from membra.convert.NETS "
                f"({', '.join(_net_names())}) or nn.Sequential / torchvision-style blocks, "
                "then replace_relu")


def _net_names() -> list[str]:
    from .nets import NETS

    return sorted(NETS)


def _trace(model: nn.Module) -> fx.GraphModule:
    if isinstance(model, fx.GraphModule):
        return model
    _refuse_spiking(model)
    try:
        graph = _Tracer().trace(model)
    except Exception as err:  # torch.fx raises many types for data-dependent code
        raise UnsupportedLayerError(type(model).__name__, "untraceable forward",
                                    f"torch.fx could not trace it ({err}); build the model "
                                    "from nn.Sequential, membra.convert.Residual and plain "
                                    "torchvision-style blocks") from None
    return fx.GraphModule(model, graph, class_name=type(model).__name__)


def _hint(m) -> str:
    for cls, hint in _HINTS.items():
        if isinstance(m, cls):
            return hint
    return "not in the supported-layer table (Linear, Conv, BN, QCFS, pooling, Flatten, " \
           "Dropout, Identity, residual add); see docs/conversion.md"


def _node_args(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.args if isinstance(a, fx.Node)]


def capture(model: nn.Module) -> tuple[fx.GraphModule, list[Op]]:
    """Trace ``model`` and classify every operation; returns ``(graph module, ops)``."""
    gm = _trace(model)
    ops: list[Op] = []
    index: dict[fx.Node, int] = {}
    for node in gm.graph.nodes:
        ins = [index[a] for a in _node_args(node)]
        if node.op == "placeholder":
            if any(o.kind == "input" for o in ops):
                raise UnsupportedLayerError(node.name, "second input", "one input tensor only")
            op = Op("input", node.name)
        elif node.op == "call_module":
            m = gm.get_submodule(node.target)
            path = str(node.target)
            if isinstance(m, WEIGHTS):
                kind = "weight"
            elif isinstance(m, QCFS):
                kind = "qcfs"
            elif isinstance(m, LINEAR_OPS):
                kind = "linear"
            elif isinstance(m, MAXPOOLS):
                kind = "maxpool"
            elif isinstance(m, NORMS):
                kind = "bn"
            else:
                raise UnsupportedLayerError(path, type(m).__name__, _hint(m))
            op = Op(kind, path, ins, module=m)
        elif node.op == "call_function":
            if node.target in (operator.add, torch.add) and len(ins) == 2 \
                    and len(node.args) == 2 and not node.kwargs:
                op = Op("add", node.name, ins)
            elif node.target is torch.flatten and len(ins) == 1:
                start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
                end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
                if start != 1 or end != -1:
                    raise UnsupportedLayerError(node.name, "torch.flatten",
                                                "flatten from dim 1 only (keep the batch)")
                op = Op("linear", node.name, ins, module=nn.Flatten())
            else:
                name = getattr(node.target, "__name__", str(node.target))
                hint = _FUNCTIONAL_RELU if name in ("relu", "relu_") else \
                    "only residual additions and torch.flatten(x, 1) are supported as functions"
                raise UnsupportedLayerError(node.name, f"function {name}", hint)
        elif node.op == "call_method":
            if node.target == "flatten" and len(ins) == 1 and tuple(node.args[1:]) in ((1,),):
                op = Op("linear", node.name, ins, module=nn.Flatten())
            else:
                hint = _FUNCTIONAL_RELU if node.target in ("relu", "relu_") else \
                    "only x.flatten(1) is supported as a method"
                raise UnsupportedLayerError(node.name, f"method .{node.target}()", hint)
        elif node.op == "output":
            if len(ins) != 1:
                raise UnsupportedLayerError("output", "several outputs", "return one tensor")
            op = Op("output", "output", ins)
        else:
            raise UnsupportedLayerError(node.name, node.op, "attributes and constants in the "
                                        "forward cannot be converted")
        index[node] = len(ops)
        ops.append(op)
    return gm, ops


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
    gm = _trace(copy.deepcopy(model)).eval()
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
            lam = float(m.lam.detach()) if isinstance(m.lam, torch.Tensor) else m.lam
            if not lam > 0 or lam == float("inf"):
                raise InvalidValueError(path, "QCFS", f"lam (the clip value, threshold of the "
                                        f"spiking neuron) must be finite and > 0, got {lam!r}")
            if isinstance(m.L, bool) or not isinstance(m.L, int) or m.L < 1:
                raise InvalidValueError(path, "QCFS", f"L (the level, spikes per window) must "
                                        f"be an int >= 1, got {m.L!r}")
