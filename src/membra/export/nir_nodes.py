"""What NIR export and import share: the ``nir`` package, the ``membra.*`` metadata prefix,
array conversion, look-ups of optional neuron models in :mod:`membra.nn`, the time step check,
and the membra neuron -> NIR neuron node mapping (:func:`nir_neuron_params`; the equations are
in :mod:`.nir`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .. import nn as mnn
from ..nn import IF, LIF

PREFIX = "membra."
_F32 = np.float32


def _nir():
    try:
        import nir
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("NIR export needs the nir package: pip install 'membra[export]'") \
            from err
    return nir


def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64).astype(_F32)


def _peer(name: str, node_name: str = "", node_type: str = ""):
    """``membra.nn.<name>`` (a neuron model of the neuron-models issue), or a ValueError."""
    cls = getattr(mnn, name, None)
    if cls is None:
        where = f"node {node_name!r} ({node_type}) " if node_name else ""
        raise ValueError(f"from_nir: {where}needs membra.nn.{name}, which this membra version "
                         "does not have")
    return cls


def _is(m, name: str) -> bool:
    cls = getattr(mnn, name, None)
    return cls is not None and isinstance(m, cls)


# ---- neurons: membra <-> NIR parameters -----------------------------------------------------
def nir_neuron_params(neuron: nn.Module, shape: tuple[int, ...], dt: float = 1.0) -> dict:
    """NIR parameters equal to a membra neuron under forward Euler with step ``dt``
    (module docstring): LIF ``tau = tau_m dt, r = 1, v_leak = v_reset``; IF ``r = 1/dt``;
    CubaLIF ``tau_syn = tau_s dt, tau_mem = tau_m dt, r = 1, v_leak = v_reset, w_in = tau_s``
    (so NIR's current equals membra's); Delay ``delay = d dt``."""
    full = lambda v: np.full(shape, float(v), dtype=_F32)  # noqa: E731
    if _is(neuron, "Delay"):
        d = neuron.delays.detach().double().expand(shape)
        return {"delay": _np(d * dt)}
    p = {"v_threshold": full(neuron.v_th), "v_reset": full(neuron.v_reset)}
    if _is(neuron, "CubaLIF"):
        tau_s = float(neuron.tau_syn)
        p.update(tau_syn=full(tau_s * dt), tau_mem=full(float(neuron.tau) * dt), r=full(1.0),
                 v_leak=full(neuron.v_reset), w_in=full(tau_s))
    elif _subclass_only(neuron, LIF):
        p.update(tau=full(float(neuron.tau) * dt), r=full(1.0), v_leak=full(neuron.v_reset))
    elif isinstance(neuron, IF):
        p.update(r=full(1.0 / dt))
    else:
        raise ValueError(f"to_nir: {type(neuron).__name__} has no NIR node (NIR has LIF, IF, "
                         "CubaLIF and Delay)")
    return p


def _subclass_only(neuron, cls) -> bool:
    """A user subclass of LIF that adds no known extra dynamics (ALIF/RLIF are refused)."""
    return isinstance(neuron, cls) and not any(_is(neuron, n) for n in ("RLIF", "ALIF"))


def _neuron_meta(neuron: nn.Module, shape) -> dict:
    if _is(neuron, "Delay"):
        return {}
    v0 = neuron.init_potential.detach()
    meta = {PREFIX + "reset": neuron.reset, PREFIX + "fire": ">=",
            PREFIX + "surrogate": neuron.surrogate, PREFIX + "alpha": float(neuron.alpha),
            PREFIX + "detach_reset": bool(neuron.detach_reset),
            PREFIX + "init_potential_learnable": bool(neuron.learnable_potential)}
    if neuron.learnable_potential or bool((v0 != 0).any()):
        meta[PREFIX + "init_potential"] = _np(v0.expand(1, *shape)[0])
    i0 = getattr(neuron, "init_current", None)
    if isinstance(i0, torch.Tensor):
        learn = isinstance(i0, nn.Parameter)
        meta[PREFIX + "init_current_learnable"] = learn
        if learn or bool((i0 != 0).any()):
            meta[PREFIX + "init_current"] = _np(i0.detach().expand(1, *shape)[0])
    return meta


def _check_surrogate(neuron: nn.Module, name: str) -> None:
    """NIR carries no surrogate; membra keeps a built-in's name and alpha as metadata, and a
    custom one (a callable) cannot be written: a ``ValueError`` naming the layer and it."""
    sg = getattr(neuron, "surrogate_fn", None)
    if sg is not None and not sg.builtin:
        raise ValueError(
            f"to_nir: layer {name!r} ({type(neuron).__name__}) has the custom surrogate "
            f"{sg.name!r}, which a NIR file cannot carry (membra writes only the built-in "
            f"surrogates' names as metadata). The spikes do not depend on the surrogate: to "
            f"export, give the layer a built-in one first, e.g. layer.surrogate_fn = "
            f"membra.functional.as_surrogate('sigmoid')")


def _neuron_node(neuron: nn.Module, shape, dt, nir, name: str):
    _check_surrogate(neuron, name)
    params = nir_neuron_params(neuron, shape, dt)
    if _is(neuron, "Delay"):
        return nir.Delay(**params)
    cls = nir.CubaLIF if "tau_syn" in params else nir.LIF if "tau" in params else nir.IF
    return cls(**params, metadata=_neuron_meta(neuron, shape))


def _check_dt(dt) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) \
            or dt <= 0:
        raise ValueError(f"dt must be a positive number, got {dt!r}")
    return float(dt)


