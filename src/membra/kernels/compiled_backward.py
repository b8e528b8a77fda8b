r"""A custom surrogate's LIF/IF backward compiled whole: :func:`walk_back`.

The blockwise backward of a custom surrogate (:func:`.fused._blockwise_backward`) makes two
passes: the compiled derivative writes :math:`\sigma'(h_t - v_{th})` of a block, then the C++
kernel reads it back with ``h`` and ``gs`` and walks the block back in time. Here the
surrogate's derivative and the whole walk back are one :func:`torch.compile`\ d function of
``(gs, h, gv_T)``, which inductor fuses into one loop over the neurons (``max_fusion_size``
raised so that all ``T`` steps fuse): it reads ``gs`` and ``h`` once and writes ``gx`` once,
the derivative never leaves registers. Per step, from :math:`t = T - 1` down to 0, the same
operations in the same order as the C++ ``walk_back_block`` (``-ffp-contract=off`` there, no
contraction here either), so the gradients are the blockwise backward's but for the last bits
of :math:`f'` (the likely cause, not isolated: inductor evaluates ``exp`` and its kin with
SIMD code in a vectorised loop and with libm in the loop's scalar tail, and the derivative
alone and this whole walk, two loops of different extents, need not put a neuron in the same
one; seen: 1-3 of 58-290 gradients about one ulp apart, depending on the shapes traced
before):

.. math::
    \sigma_t = f'(h_t - v_{th}),\quad
    \frac{\partial v_t}{\partial h_t} = 1 - v_{th}\sigma_t \ (\text{soft})\ |\
    [h_t < v_{th}] + (v_{reset} - h_t)\sigma_t \ (\text{hard}),\\
    g^h_t = g^s_t \sigma_t + g^v_t \frac{\partial v_t}{\partial h_t},\quad
    g^x_t = g^h_t/\tau,\ g^v_{t-1} = g^h_t - g^x_t \ (\text{LIF})\ |\
    g^x_t = g^v_{t-1} = g^h_t \ (\text{IF})

(the reset terms of :math:`\sigma_t` vanish with ``detach_reset``). It serves what it is fast
for, and the blockwise backward everything else (:func:`usable`): at most :data:`MAX_STEPS`
steps (the loop is unrolled, one trace per step count; past 16 steps the per-step rows, each
a power-of-two stride apart, measured 4x slower in one fused loop), no gradient of ``tau``
(that needs the forward re-run from ``x``), ``gs`` in the state dtype (float32 / float64), and
freed memory reused (:func:`membra.kernels.reuse_freed_memory`, which the ``membra`` command
applies, or ``MALLOC_MMAP_THRESHOLD_``): the ``gx`` inductor allocates cannot come from the
kernels' output pool, and on fresh pages its page faults cost more than the fusion saves.
"""

from __future__ import annotations

import os

import torch

from ..functional.kinds import NeuronKind
from ..functional.surrogate import Surrogate
from ..functional.surrogate_compiled import FAILED, derivative_of, eligible, run_compiled
from .memory import reuse_applied

__all__ = ["walk_back", "usable", "MAX_STEPS", "KEY"]

#: the most time steps the compiled walk back unrolls (one trace per step count)
MAX_STEPS = 16
#: the key of the compiled walk back among a surrogate's compiled functions
KEY = "backward"
#: inductor options: fuse every step into one loop (the default caps a fused node at 64 ops)
_OPTIONS = {"max_fusion_size": 4096}


def _reuse_active() -> bool:
    """Whether large freed blocks stay mapped (membra's ``mallopt`` or glibc's environment)."""
    return reuse_applied() is not None or "MALLOC_MMAP_THRESHOLD_" in os.environ


def usable(s: Surrogate, gs: torch.Tensor, h: torch.Tensor | None, need_tau: bool) -> bool:
    """Whether :func:`walk_back` serves this backward (see the module docstring)."""
    return (h is not None and not need_tau and 0 < h.shape[0] <= MAX_STEPS
            and h.dtype in (torch.float32, torch.float64) and gs.dtype == h.dtype
            and h.is_contiguous() and gs.is_contiguous() and _reuse_active()
            and eligible(s, h, h.numel(), KEY))


def _make(f):
    """The compiled walk back of surrogate function ``f``; ``lif``, ``soft`` and ``detach``
    are Python constants of the trace, ``v_th``, ``v_reset`` and ``1/tau`` 0-d tensors of the
    state dtype (a new threshold needs no new trace), ``gv`` ``[M]`` or a 0-d zero."""
    df = derivative_of(f)

    def walk(gs, h, gv, v_th, v_reset, inv_tau, lif: bool, soft: bool, detach: bool):
        gx = []
        for t in range(h.shape[0] - 1, -1, -1):
            ht = h[t]
            u = ht - v_th
            sg = df(u)
            if soft:
                dvdh = 1 + (-v_th) * sg if not detach else torch.ones_like(sg)
            else:  # 1 - s_t, NaN where h is not finite
                dvdh = torch.where(u >= 0, 0.0, 1.0).to(u.dtype) + (u - u)
                if not detach:
                    dvdh = dvdh + (v_reset - ht) * sg
            gh = gs[t] * sg + gv * dvdh
            if lif:
                g = gh * inv_tau
                gx.append(g)
                gv = gh - g
            else:
                gx.append(gh)
                gv = gh
        return torch.stack(gx[::-1]), gv

    return torch.compile(walk, dynamic=True, fullgraph=True, options=_OPTIONS)


def walk_back(s: Surrogate, gs: torch.Tensor, gv: torch.Tensor | None, h: torch.Tensor,
              tau: torch.Tensor, kind: int, soft: bool, v_th: float, v_reset: float,
              detach: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(gx [T, M], gv0 [M])`` of a layer from ``gs [T, M]``, ``gv`` (the gradient of
    ``v_T``, ``None`` for zero) and the forward's charged potential ``h [T, M]``; ``None`` when
    the compiled code cannot run (the caller then runs the blockwise backward)."""
    scalar = h.new_tensor
    zero = scalar(0.0)
    inv_tau = scalar(1.0) / tau.to(h.dtype) if kind == NeuronKind.LIF.code else zero
    out = run_compiled(s, KEY, _make, gs, h, zero if gv is None else gv, scalar(v_th),
                       scalar(v_reset), inv_tau, kind == NeuronKind.LIF.code, bool(soft),
                       bool(detach))
    if out is FAILED:
        return None
    gx, gv0 = out
    return gx, gv0.expand(h.shape[1:]).contiguous()
