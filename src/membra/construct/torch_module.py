r"""A compiled circuit as a torch module on membra's time-first ``[T, B, n]`` tensors.

The neurons are run one topological layer at a time over the whole sequence, as membra's
multi-step layers are: layer :math:`\ell` takes the input lines and the spikes of layers
:math:`< \ell` at the *same* step (no delay), then loops over time with the grid recursion

.. math::

    V[t] = \max(\lambda V[t-1](1 - S[t-1]) + I[t],\ 0),\qquad S[t] = \mathbb{1}\{V[t] > 1\}.

This is not :class:`membra.nn.LIF`: membra's LIF fires at :math:`h \ge v_{th}`, scales the input
by :math:`1/\tau` and has no clamp at 0, while the constructions rely on the strict threshold
and the clamp. Weights are non-trainable buffers; the module has no parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from .rule import binary_error

__all__ = ["CircuitModule", "grid_sequence", "check_spikes"]


def grid_sequence(current: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid neurons driven by ``current`` ``[T, B, n]``: returns ``(spikes, potentials)``."""
    v = torch.zeros_like(current[0])
    s = torch.zeros_like(v)
    spikes, pots = [], []
    for t in range(current.shape[0]):
        v = torch.clamp(lam * v * (1 - s) + current[t], min=0)
        s = (v > 1).to(current.dtype)
        spikes.append(s)
        pots.append(v)
    return torch.stack(spikes), torch.stack(pots)


def check_spikes(x: torch.Tensor) -> None:
    """Refuse an input that is not 0/1 (0.5, 2, -1, NaN, inf), naming the first bad value and
    its index; checked before any cast, so a small value is not rounded to 0 first."""
    bad = (x != 0) & (x != 1)
    if bool(bad.any()):
        index = bad.nonzero()[0].tolist()
        raise binary_error("x", x[tuple(index)].item(), index)


class CircuitModule(nn.Module):
    """``forward(x [T, B, n]) -> out [T, B]``; ``forward(x, return_all=True)`` returns
    ``{"out", "spikes" [T, B, N], "potentials" [T, B, N], "neurons"}``. A clock line, if the
    circuit needs one, is added inside. ``x`` may be bool, integer or floating, but its values
    must be 0 or 1 (else ``ValueError`` naming the value and its index)."""

    def __init__(self, circuit, dtype: torch.dtype = torch.float64):
        super().__init__()
        if dtype not in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"dtype must be a floating torch dtype, got {dtype}")
        w_in, w_nn = circuit.float_matrices()
        self.neurons = list(circuit.neurons)
        self.requires_clock = circuit.requires_clock
        self.n_inputs = circuit.n_inputs
        self.lam = float(circuit.lam)
        self.out_index = self.neurons.index(circuit.output)
        self.sizes = [len(layer) for layer in circuit.layers]
        self.register_buffer("w_in", torch.as_tensor(w_in, dtype=dtype))
        self.register_buffer("w_nn", torch.as_tensor(w_nn, dtype=dtype))

    def forward(self, x: torch.Tensor, return_all: bool = False):
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[-1] != self.n_inputs:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"CircuitModule expects x of shape [T, B, {self.n_inputs}], "
                             f"got {got}")
        check_spikes(x)
        x = x.to(self.w_in.dtype)
        if self.requires_clock:
            x = torch.cat([torch.ones_like(x[..., :1]), x], dim=-1)
        spikes, pots, start = [], [], 0
        for size in self.sizes:
            stop = start + size
            current = x @ self.w_in[start:stop].T
            if start:
                current = current + torch.cat(spikes, -1) @ self.w_nn[start:stop, :start].T
            s, v = grid_sequence(current, self.lam)
            spikes.append(s)
            pots.append(v)
            start = stop
        all_s = torch.cat(spikes, -1)
        out = all_s[..., self.out_index]
        if not return_all:
            return out
        return {"out": out, "spikes": all_s, "potentials": torch.cat(pots, -1),
                "neurons": self.neurons}

    def extra_repr(self) -> str:
        return (f"neurons={len(self.neurons)}, layers={len(self.sizes)}, lam={self.lam}, "
                f"requires_clock={self.requires_clock}")
