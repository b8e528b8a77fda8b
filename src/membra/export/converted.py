"""NIR export of a converted SNN (``membra.convert.to_snn(..., mode="naive")``), kept apart.

It relies on three things of the converted SNN, and nothing else: ``snn.mode``; ``snn.net``,
a ``torch.fx.GraphModule`` of per-step modules on ``[B, ...]`` with BatchNorm folded; and its
QCFS modules, recognised by their ``lam`` (tensor) and ``L`` attributes. Naive mode runs each
QCFS as an IF neuron with threshold ``lam``, start ``lam/2``, soft reset, output
``lam * spikes``, every layer at every step on the repeated analog input: in NIR an ``IF``
node (``membra.*`` metadata for the start and the soft reset) and a ``Scale(lam)`` node. The
graph maps ``[T, B, *in_shape]`` (the input repeated) to per-step logits; the converted SNN's
output is their running mean.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..nn import IF

__all__ = ["converted_to_nir"]


def _is_qcfs(m: nn.Module) -> bool:
    return isinstance(getattr(m, "lam", None), torch.Tensor) and isinstance(
        getattr(m, "L", None), int)


def _qcfs(ex, name, m, srcs, shape) -> list[str]:
    lam = float(m.lam.detach())
    neuron = IF(shape, v_th=lam, v_reset=0.0, reset="soft", init_potential=lam / 2)
    fire = ex.module(name, neuron, srcs, shape, 1)
    scale = ex.nir.Scale(scale=np.full(shape, lam, dtype=np.float32))
    return ex.put(f"{name}_out", scale, fire, spike=lam)


def converted_to_nir(snn, in_shape, dt: float, ex):
    """The NIR graph of a naive-mode converted SNN (module docstring)."""
    if snn.mode != "naive":
        raise ValueError(f"to_nir: a {snn.mode!r} converted SNN runs layer-by-layer time "
                         "windows that NIR cannot express; convert with to_snn(model, "
                         "mode='naive', T=...) to export the IF network (same weights)")
    in_shape = in_shape if in_shape is not None else getattr(snn, "_input_shape", None) or None
    if in_shape is None:
        raise ValueError("to_nir needs in_shape=(C, H, W) or (N,) for a converted SNN")
    dtype = next(snn.net.parameters()).dtype
    ex.hooks = [(_is_qcfs, _qcfs)]
    return ex.walk(snn.net, torch.zeros(1, *tuple(int(d) for d in in_shape), dtype=dtype))
