r"""AL-QCFS: choose a quantization level per layer.

membra's default criterion (``"distortion"``): for each QCFS layer, the smallest candidate
``L`` with

.. math::

    \frac{\lVert \mathrm{QCFS}_L(z) - \mathrm{clip}(z, 0, \lambda)\rVert^2}
         {\lVert \mathrm{clip}(z, 0, \lambda)\rVert^2} \le \tau

on calibration data (the trained ``lam``, ``tau = 0.1``). ``"pascal_hist"`` is the statistic
of PASCAL's reference code on a 5-bin histogram ``h`` of the layer's outputs:
``A = 1 - (#{h_j >= mean h} - 1)/(B - 1)``, ``M = A (g^2 + 1)(kappa + 3B^2/((B-2)(B-3)))``
with ``g``, ``kappa`` the skewness and excess kurtosis of ``h``; its map from ``M`` to ``L``
is not published, so the user gives ``thresholds``.
"""

from __future__ import annotations

import torch
from torch import nn

from .qcfs import QCFS, qcfs, qcfs_layers

__all__ = ["al_select", "distortion", "pascal_hist_statistic", "collect_preactivations"]


def distortion(z: torch.Tensor, lam, L: int) -> float:
    """``||QCFS_L(z) - clip(z, 0, lam)||^2 / ||clip(z, 0, lam)||^2`` (0 when all clip to 0)."""
    lam = torch.as_tensor(lam, dtype=z.dtype)
    ref = torch.minimum(torch.clamp(z, min=0), lam)
    den = float((ref ** 2).sum())
    return float(((qcfs(z, lam, L) - ref) ** 2).sum()) / den if den > 0 else 0.0


def pascal_hist_statistic(outputs: torch.Tensor, bins: int = 5) -> float:
    """PASCAL reference code's bimodality-like statistic ``M`` of a layer's outputs."""
    h = torch.histc(outputs.double().flatten(), bins=bins)
    A = 1 - (int((h >= h.mean()).sum()) - 1) / (bins - 1)
    d = h - h.mean()
    sd = d.pow(2).mean().sqrt()
    if sd == 0:
        return float("nan")
    g = float(d.pow(3).mean() / sd ** 3)
    kappa = float(d.pow(4).mean() / sd ** 4 - 3)
    return A * (g * g + 1) * (kappa + 3 * bins ** 2 / ((bins - 2) * (bins - 3)))


def _batches(data):
    if isinstance(data, torch.Tensor):
        yield data
        return
    for item in data:
        yield item[0] if isinstance(item, (tuple, list)) else item


def collect_preactivations(model: nn.Module, data, max_batches: int | None = None,
                           prepare=None) -> dict[str, torch.Tensor]:
    """``{QCFS path: inputs z}`` of ``model`` (eval, no grad) over ``data`` (a tensor, or an
    iterable of tensors or ``(x, y)`` batches; ``prepare(x)`` maps a batch to the model's
    input)."""
    layers = qcfs_layers(model)
    if not layers:
        raise ValueError("the model has no QCFS layers: call replace_relu first")
    store: dict[str, list[torch.Tensor]] = {p: [] for p in layers}
    hooks = [m.register_forward_hook(lambda m, a, o, p=p: store[p].append(a[0].detach()))
             for p, m in layers.items()]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for k, x in enumerate(_batches(data)):
                if max_batches is not None and k >= max_batches:
                    break
                model(prepare(x) if prepare else x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    if not any(store.values()):
        raise ValueError("al_select: the calibration data is empty")
    return {p: torch.cat([t.flatten() for t in v]) for p, v in store.items()}


def al_select(model: nn.Module, data, candidates=(1, 2, 4, 8, 16), criterion: str = "distortion",
              tau: float = 0.1, thresholds=None, max_batches: int | None = None,
              prepare=None) -> dict[str, int]:
    """Per-layer levels ``{QCFS path: L}`` chosen on calibration ``data``.

    Args:
        candidates: allowed levels, tried from the smallest.
        criterion: ``"distortion"`` (membra default, ``tau``) or ``"pascal_hist"`` (needs
            ``thresholds``: ascending ``M`` cut points, one fewer than ``candidates``; a layer
            whose ``M`` is below the k-th cut point gets ``candidates[k]``).
    """
    cands = sorted(int(c) for c in candidates)
    if not cands or cands[0] < 1:
        raise ValueError(f"candidates must be positive ints, got {candidates!r}")
    if criterion not in ("distortion", "pascal_hist"):
        raise ValueError(f"criterion must be 'distortion' or 'pascal_hist', got {criterion!r}")
    if criterion == "pascal_hist" and (thresholds is None or len(thresholds) != len(cands) - 1):
        raise ValueError(f"criterion='pascal_hist' needs {len(cands) - 1} thresholds (one fewer "
                         "than candidates); PASCAL does not publish its map from M to L")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau!r}")
    z = collect_preactivations(model, data, max_batches, prepare)
    layers: dict[str, QCFS] = qcfs_layers(model)
    chosen = {}
    for path, m in layers.items():
        lam = m.lam.detach()
        if criterion == "distortion":
            chosen[path] = next((L for L in cands if distortion(z[path], lam, L) <= tau),
                                cands[-1])
        else:
            M = pascal_hist_statistic(qcfs(z[path], lam, m.L))
            chosen[path] = next((c for c, t in zip(cands, thresholds, strict=False) if M < t),
                                cands[-1])
    return chosen
