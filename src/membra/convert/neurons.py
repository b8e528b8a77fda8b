r"""The spiking neurons of converted networks (:mod:`membra.convert.snn` runs them).

**PASCAL** (:class:`PascalNeuron`): a layer emits during a window of ``L`` steps. The
two-phase neuron (default) keeps its membrane in units of the quantum :math:`\theta = \lambda/L`:

.. math::

    v = \tfrac12 + \Big(\sum_{t \in \text{input window}} I(t)\Big)\, L/\lambda, \qquad
    s_k = [v \ge 1],\; v \leftarrow v - s_k \quad (k = 1..L),

so it emits :math:`\mathrm{clip}(\lfloor z/\theta + 1/2 \rfloor, 0, L)` front-loaded spikes,
the QCFS count, and the network's logits (the current integrated over the last window) equal
the QCFS ANN's. The emission phase runs as IF neurons of :mod:`membra.kernels` (zero input,
threshold 1, soft reset). ``neuron="signed"`` fires during accumulation (threshold θ, start θ/2,
soft reset; kept in units of θ too), then corrects with ``max(T_in, L) - 1`` steps of +1 /
reverse -1 spikes and re-emits the net count front-loaded. :func:`bias_shares` cuts a bias
into exact per-step shares.

**Naive** (:class:`NaiveIF`): an IF neuron with threshold λ, ``v(0) = λ/2``, soft reset and
output ``λ s(t)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..kernels import if_sequence
from .qcfs import qcfs_scale

__all__ = ["two_phase_counts", "signed_counts", "bias_shares", "PascalNeuron", "NaiveIF"]


def _integrate(values: torch.Tensor) -> torch.Tensor:
    """``values[0] + values[1] + ...`` over the window (dim 0), step after step."""
    z = values[0]
    for t in range(1, values.shape[0]):
        z = z + values[t]
    return z


def _carry_nan(spikes: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """Spikes ``[T, ...]`` set to NaN where ``bad [...]`` (a NaN membrane or input current):
    NaN makes no comparison true, so the neuron would emit nothing and look like a valid 0."""
    return spikes.masked_fill(bad, float("nan")) if bool(bad.any()) else spikes


def _emit(v0: torch.Tensor, L: int) -> torch.Tensor:
    """``L`` steps of IF neurons (zero input, threshold 1, soft reset) from ``v0``:
    ``s_k = [v >= 1]; v -= s_k``. Front-loaded binary spikes ``[L, ...]``."""
    x = v0.new_zeros((L, *v0.shape))
    spikes, _ = if_sequence(x, v0, v_th=1.0, v_reset=0.0, reset="soft")
    return _carry_nan(spikes, torch.isnan(v0))


def two_phase_counts(z: torch.Tensor, lam, L: int) -> torch.Tensor:
    """Spikes ``[L, ...]`` of the two-phase neuron with integrated input ``z``: the membrane
    in units of θ starts at ``z * (L / lam) + 1/2``, the QCFS expression (:func:`qcfs_scale`)."""
    return _emit(z * qcfs_scale(lam, L) + 0.5, L)


def signed_counts(currents: torch.Tensor, lam, L: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Signed-correction neuron on input currents ``[T_in, ...]``: ``(spikes [L, ...],
    reverse spikes per neuron)``. Membrane in units of θ (currents times ``L / lam``): it
    fires during accumulation (threshold 1, start 1/2, soft reset), corrects for
    ``max(T_in, L) - 1`` steps (+1 at ``v >= 1``, -1 and ``v += 1`` at ``v < 0``), then
    re-emits the net count front-loaded over ``L`` steps."""
    x = currents * qcfs_scale(lam, L)
    acc, v = if_sequence(x, torch.full_like(x[0], 0.5), v_th=1.0, v_reset=0.0, reset="soft")
    count = acc.sum(0)
    reverse = torch.zeros_like(count)
    for _ in range(max(currents.shape[0], L) - 1):
        pos = (v >= 1).to(v.dtype)
        neg = (v < 0).to(v.dtype)
        v = v - pos + neg
        count = count + pos - neg
        reverse = reverse + neg
    k = torch.arange(1, L + 1, dtype=count.dtype, device=count.device)
    spikes = (k.view(-1, *[1] * count.dim()) <= count).to(count.dtype)
    return _carry_nan(spikes, torch.isnan(v)), reverse


def bias_shares(b: torch.Tensor, T: int) -> torch.Tensor:
    """``b`` cut into ``T`` per-step shares ``[T, ...]`` that add up to ``b`` exactly.

    Write ``b = k u`` with ``u`` the lowest set bit of ``b`` and ``k`` an odd integer, and
    ``|k| = q T + r``; step ``t`` gets ``sign(k) (q + [t < r]) u``. The shares are as even as
    ``b``'s own binary grid allows (they differ by at most ``u``), every partial sum is a
    multiple of ``u`` no larger than ``|b|``, so adding them never rounds, and wherever adding
    ``b`` at once to a current is exact, adding the shares step by step is exact too. (``b /
    T`` added ``T`` times is not ``b`` when ``T`` is not a power of two.) NaN/inf go whole
    into the first share."""
    if T == 1:
        return b.unsqueeze(0).clone()
    finite = torch.isfinite(b)
    bf = torch.where(finite, b, torch.zeros_like(b))
    mant, ex = torch.frexp(bf)                          # bf = mant * 2**ex, |mant| in [0.5, 1)
    digits = 1 - round(math.log2(torch.finfo(b.dtype).eps))  # 24 (float32), 53 (float64)
    k = (mant * 2.0 ** digits).to(torch.int64)          # exact integer
    low = k & -k                                        # lowest set bit of the integer k
    odd = torch.where(low == 0, torch.zeros_like(k), k // torch.where(low == 0, 1, low))
    unit = torch.where(odd == 0, torch.zeros_like(bf), bf / odd.to(b.dtype))  # exact
    q, r = odd.abs() // T, odd.abs() % T
    t = torch.arange(T, device=b.device).view(-1, *[1] * b.dim())
    shares = odd.sign().to(b.dtype) * (q + (t < r)).to(b.dtype) * unit
    first = torch.where(finite, shares[0], b)
    return torch.cat([first.unsqueeze(0), shares[1:]])


class PascalNeuron(nn.Module):
    """The PASCAL spiking layer of one QCFS call site (clip value ``lam``, level ``L``).

    ``forward(currents [W, B, ...])`` integrates the input window and returns the emitted
    spikes weighted by ``theta = lam / L``, ``[L, B, ...]`` (each spike carries θ to the next
    layer); ``two_phase`` (:func:`two_phase_counts`) or ``signed`` (:func:`signed_counts`,
    whose reverse spikes per neuron are left in ``reverse``). ``last_spikes`` holds the binary
    spikes of the last call (``membra.energy.sops`` counts them as events)."""

    emits_spikes = True

    def __init__(self, lam: torch.Tensor, L: int, neuron: str = "two_phase"):
        super().__init__()
        self.register_buffer("lam", torch.as_tensor(lam).detach().clone())
        self.L, self.neuron = L, neuron
        self.last_spikes: torch.Tensor | None = None
        self.reverse: torch.Tensor | None = None

    @property
    def theta(self) -> torch.Tensor:
        return self.lam / self.L

    def delay(self, window: int) -> int:
        """Steps between the input window's end and the first emission step."""
        return 0 if self.neuron == "two_phase" else max(window, self.L) - 1

    def forward(self, currents: torch.Tensor) -> torch.Tensor:
        if self.neuron == "two_phase":
            spikes = two_phase_counts(_integrate(currents), self.lam, self.L)
        else:
            spikes, self.reverse = signed_counts(currents, self.lam, self.L)
        self.last_spikes = spikes
        return spikes * self.theta

    def extra_repr(self) -> str:
        return f"L={self.L}, neuron={self.neuron!r}"


class NaiveIF(nn.Module):
    """The naive spiking layer of one QCFS call site: IF neurons with threshold ``lam``,
    ``v(0) = lam / 2``, soft reset. ``forward(currents [T, B, ...])`` returns ``lam * s``
    ``[T, B, ...]``; ``last_spikes`` holds the binary spikes of the last call. A per-channel
    ``lam`` (``quantize_relu(channelwise=True)``) runs in units of ``lam`` (threshold 1)."""

    emits_spikes = True

    def __init__(self, lam: torch.Tensor):
        super().__init__()
        self.register_buffer("lam", torch.as_tensor(lam).detach().clone())
        self.last_spikes: torch.Tensor | None = None

    def forward(self, currents: torch.Tensor) -> torch.Tensor:
        a = currents.contiguous()
        if self.lam.dim() == 0:
            lam = float(self.lam)
            s, _ = if_sequence(a, torch.full_like(a[0], lam / 2), v_th=lam, v_reset=0.0,
                               reset="soft")
        else:
            u = (a / self.lam).contiguous()
            s, _ = if_sequence(u, torch.full_like(u[0], 0.5), v_th=1.0, v_reset=0.0,
                               reset="soft")
        self.last_spikes = _carry_nan(s, torch.isnan(a).any(0))
        return self.last_spikes * self.lam
