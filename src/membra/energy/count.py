"""Counting: :func:`sops` hooks every weight layer and charges the events it is fed as
synaptic operations and its analog input as multiply-accumulates (:mod:`membra.energy`)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..nn import SpikingNeuron
from .events import _Events, _is_counts
from .results import LayerOps, SOPReport

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def ones_op(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module`` (Linear or Conv) applied to ``x`` with all-ones weights and no bias: at each
    output, the number of input events in its receptive field (exact at borders, strides and
    groups). Summed, it is the synaptic operations caused by the event map ``x``."""
    w = torch.ones_like(module.weight)
    if isinstance(module, nn.Linear):
        return x.sum(-1, keepdim=True).expand(*x.shape[:-1], module.out_features)
    if module.padding_mode != "zeros":
        raise ValueError(f"sops: {type(module).__name__} with padding_mode="
                         f"{module.padding_mode!r} is not supported (zeros padding only)")
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[w.dim() - 2]
    return conv(x, w.to(x.dtype), None, module.stride, module.padding, module.dilation,
                module.groups)


def _ones_op(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module`` applied to ``x`` with all-ones weights and no bias, summed."""
    return ones_op(module, x).sum()


def recurrent_events(spikes: torch.Tensor) -> float:
    """Spikes a recurrent neuron layer (RLIF, ``h_t`` charged by ``W s_{t-1}``) feeds back
    through its ``[n, n]`` weight in one forward of ``spikes [T, B, *S]``: those of steps
    ``1 .. T-1``; each costs ``n`` accumulates (SOPs), the last step's reach nothing."""
    return float(spikes[:-1].sum())


def _dense_macs(module: nn.Module, out: torch.Tensor) -> float:
    """Multiply-accumulates of one dense call: outputs x fan-in."""
    fan_in = module.weight[0].numel()
    return float(out.numel()) * fan_in


def _items(module: nn.Module, x: torch.Tensor) -> int:
    """Number of samples one call of ``module`` processes: the vectors of a Linear input
    (``[T, B, N]`` and ``[T*B, N]`` both give ``T*B``), the batch of a Conv input."""
    if isinstance(module, nn.Linear):
        return x.numel() // module.in_features
    return x.shape[0] if x.dim() == module.weight.dim() else 1


def _static(x: torch.Tensor, T: int, B: int) -> bool:
    """True when ``x`` (``[T, B, ...]`` or ``[T*B, ...]``) is the same at every step."""
    if T < 2:
        return False
    if tuple(x.shape[:2]) == (T, B):
        v = x
    elif x.shape[0] == T * B:
        v = x.unflatten(0, (T, B))
    else:
        return False
    return bool((v == v[:1]).all())


@torch.no_grad()
def sops(model: nn.Module, x: torch.Tensor, *, first_layer_macs: bool = False,
         static_input_once: bool = True) -> SOPReport:
    """Count synaptic operations per weight layer while ``model`` runs on ``x[T, B, ...]``.

    Args:
        model: a spiking network mapping ``[T, B, ...]`` to anything (its mode is left as is;
            call ``model.eval()`` first for inference counts).
        x: input sequence ``[T, B, *S]``.
        first_layer_macs: treat ``x`` as analog even when it holds non-negative integers
            (an image of integer pixels), so the layers it reaches cost MACs. By default
            such an input is event frames: the layers it reaches, directly or through
            weight-free operations, cost SOPs.
        static_input_once: count an analog input that is identical at every step as one
            dense pass (its result is reused), else T passes.

    Returns:
        :class:`SOPReport` (per-layer :class:`LayerOps` in call order, the recurrent weight of
        an RLIF layer a row of its own (:func:`recurrent_events`), totals, energies);
        ``report.to_markdown()`` prints the table.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"sops: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or 0 in x.shape[:2]:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"sops: x must be a time-first input [T, B, ...] with T, B >= 1, "
                         f"got {got}")
    T, B = x.shape[:2]
    rows: dict[str, LayerOps] = {}
    order: list[str] = []

    def row_of(name, kind, **fields) -> LayerOps:
        """The row of ``name``, made (in call order) at its first call."""
        if name not in rows:
            rows[name] = LayerOps(name=name, kind=kind, **fields)
            order.append(name)
        return rows[name]

    def hook(name):
        def run(module, args, out):
            inp = args[0]
            row = row_of(name, type(module).__name__)
            events = tracker.events(inp)
            dense = _dense_macs(module, out)
            row.calls += 1
            # per-step layers see T*B items; a stem computed once and repeated sees B
            items = B if _items(module, inp) == B and T > 1 else T * B
            row.ann_macs += dense / items
            if events is None:
                kind = "analog"
                if static_input_once and _static(inp, T, B):
                    kind, dense = "analog, static (once)", dense / T
                row.input = kind if not row.input or row.input == kind else "mixed"
                row.macs += dense / B
            else:
                row.input = "spikes" if not row.input or row.input == "spikes" else "mixed"
                row.spikes += float(events.sum()) / B
                row.sops += float(_ones_op(module, events.to(module.weight.dtype))) / B
        return run

    def recurrent_hook(name):
        def run(module, args, out):
            row = row_of(name, f"{type(module).__name__} (recurrent)", input="spikes")
            row.calls += 1
            fed = recurrent_events(out)
            row.spikes += fed / B
            row.sops += fed * module.weight.shape[0] / B
            row.ann_macs += float(module.weight.numel())
        return run

    tracker = _Events()
    handles = [m.register_forward_hook(hook(n or type(m).__name__))
               for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]
    handles += [m.register_forward_hook(recurrent_hook(f"{n}.weight" if n else "weight"))
                for n, m in model.named_modules()
                if isinstance(m, SpikingNeuron) and m.kind.recurrent]
    if not handles:
        raise ValueError("sops: model has no Linear/Conv layers to count")
    handles += [m.register_forward_hook(tracker.spikes_hook) for m in model.modules()
                if isinstance(m, SpikingNeuron) or getattr(m, "emits_spikes", False)]
    if not first_layer_macs and _is_counts(x):
        tracker.mark(x)                         # event frames
    try:
        with tracker:
            model(x)
    finally:
        for h in handles:
            h.remove()
    return SOPReport(layers=[rows[n] for n in order], batch=B, steps=T)
