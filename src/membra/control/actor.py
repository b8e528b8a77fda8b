r"""PopSAN actor: population encoder -> spiking hidden layers -> population decoder.

Encoder (per observation dim ``d`` and neuron ``k`` of its population, Gaussian receptive
field with learnable mean ``m`` and std ``s``):

.. math::
    A_{dk} = \exp\!\big(-(o_d - m_{dk})^2 / (2 s_{dk}^2)\big)

*deterministic*: accumulator ``v += A`` each step, spike when ``v > 0.999``, then
``v -= 0.999``; *stochastic*: Bernoulli(``A``). Both pass the gradient straight through to
``A``.

Spiking layer (current-based LIF, PopSAN constants): ``i_t = 0.5 i_{t-1} + W x_t``, then the
membra :class:`~membra.nn.LIF` with ``tau=4``, ``v_th=0.5``, hard reset to 0 and a rectangular
surrogate of width 1 fed with ``4 i_t``, which is exactly ``v_t = 0.75 v_{t-1} (1-s_{t-1}) + i_t``,
``s_t = [v_t \ge 0.5]``.

With ``neuron="bdett"`` the static threshold is replaced by :class:`DynamicThreshold`
(a BDETT-style homeostatic threshold, see its docstring).

Decoder: output-population rates averaged over ``T``, a learned weighted sum per action (the
grouped ``Conv1d`` of PopSAN), ``tanh``, affinely mapped to ``[low, high]`` of the action box.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..functional.surrogate import spike
from ..nn import LIF
from .normalizer import ObsNormalizer

__all__ = ["PopulationEncoder", "SpikingLayer", "DynamicThreshold", "PopulationDecoder",
           "PopSANActor", "NEURONS"]

ENCODINGS = ("deterministic", "stochastic")
NEURONS = ("lif", "bdett")


class PopulationEncoder(nn.Module):
    """Observation ``[B, D]`` -> spikes ``[T, B, D*pop]`` (module docstring)."""

    def __init__(self, obs_dim: int, pop: int = 10, T: int = 5,
                 encoding: str = "deterministic", mean_range: tuple[float, float] = (-3.0, 3.0),
                 std: float = math.sqrt(0.15)):
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding={encoding!r} is not known; choose one of "
                             f"{list(ENCODINGS)}")
        self.obs_dim, self.pop, self.T, self.encoding = obs_dim, pop, T, encoding
        means = torch.linspace(mean_range[0], mean_range[1], pop)
        self.mean = nn.Parameter(means.repeat(obs_dim, 1))
        self.std = nn.Parameter(torch.full((obs_dim, pop), float(std)))

    def activation(self, obs: torch.Tensor) -> torch.Tensor:
        """``A`` of shape ``[B, D*pop]``."""
        a = torch.exp(-(obs.unsqueeze(-1) - self.mean) ** 2 / (2 * self.std ** 2))
        return a.flatten(1)

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None):
        a = self.activation(obs)
        out = []
        if self.encoding == "deterministic":
            v = torch.zeros_like(a)
            for _ in range(self.T):
                v = v + a.detach()
                s = (v > 0.999).to(a.dtype)
                v = v - 0.999 * s
                out.append(s + (a - a.detach()))
        else:
            for _ in range(self.T):
                s = torch.bernoulli(a.detach(), generator=generator)
                out.append(s + (a - a.detach()))
        return torch.stack(out)

    def extra_repr(self) -> str:
        return f"obs_dim={self.obs_dim}, pop={self.pop}, T={self.T}, encoding={self.encoding!r}"


class DynamicThreshold(nn.Module):
    r"""Hard-reset LIF layer with a homeostatic dynamic threshold in the manner of BDETT
    (Ding et al., NeurIPS 2022): the threshold rises with the layer's average membrane
    potential and falls with the neuron's rate of depolarisation.

    Per step ``t``, for currents ``i_t`` ``[B, n]`` (``u`` the potential after the previous
    reset, ``u_0 = 0``):

    .. math::
        v_t &= (1 - 1/\tau)\, u_{t-1} + i_t,\qquad
        \bar v_t = \tfrac{1}{n}\textstyle\sum_j v_{t,j},\qquad D_t = v_t - u_{t-1} \\
        \Theta_t &= \max\big(v_{th} + a\,(\bar v_t - v_{ref}) - b \tanh(D_t / C),\;
        \Theta_{min}\big) \\
        s_t &= H(v_t - \Theta_t),\qquad u_t = v_t (1 - s_t)

    ``Theta`` is detached (the surrogate, rectangular of width 1 as PopSAN's, acts on
    ``v - Theta``). ``a = b = 0`` is the static-threshold LIF of :class:`SpikingLayer`.
    The BDETT paper's exact energy/temporal threshold equations and constants were not
    available to membra: this functional form and every default are membra's own, built
    on the two properties the paper states.
    """

    def __init__(self, n: int, *, tau: float = 4.0, v_th: float = 0.5, a: float = 0.5,
                 v_ref: float = 0.0, b: float = 0.1, C: float = 0.5,
                 theta_min: float = 0.05):
        super().__init__()
        for name, v in (("tau", tau), ("C", C), ("theta_min", theta_min)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"DynamicThreshold: {name} must be a finite number > 0, "
                                 f"got {v!r}")
        self.n, self.tau, self.v_th, self.a, self.v_ref = n, float(tau), float(v_th), \
            float(a), float(v_ref)
        self.b, self.C, self.theta_min = float(b), float(C), float(theta_min)

    def threshold(self, v: torch.Tensor, u_prev: torch.Tensor) -> torch.Tensor:
        """``Theta_t`` from the potential ``v`` ``[B, n]`` and the previous post-reset
        potential ``u_prev`` (class docstring)."""
        vbar = v.mean(-1, keepdim=True)
        th = self.v_th + self.a * (vbar - self.v_ref) - self.b * torch.tanh((v - u_prev) / self.C)
        return th.clamp_min(self.theta_min).detach()

    def forward(self, cur: torch.Tensor) -> torch.Tensor:
        """Currents ``[T, B, n]`` -> spikes ``[T, B, n]``."""
        u = torch.zeros_like(cur[0])
        out = []
        for t in range(cur.shape[0]):
            v = (1.0 - 1.0 / self.tau) * u + cur[t]
            s = spike(v - self.threshold(v, u), "rectangular", 1.0)
            u = v * (1.0 - s.detach())
            out.append(s)
        return torch.stack(out)

    def extra_repr(self) -> str:
        return (f"n={self.n}, tau={self.tau}, v_th={self.v_th}, a={self.a}, b={self.b}, "
                f"C={self.C}")


class SpikingLayer(nn.Module):
    """``Linear`` synapses + current-based LIF: ``[T, B, n_in] -> spikes [T, B, n_out]``.

    ``i_t = decay * i_{t-1} + W x_t + b``; the membra :class:`LIF` (``tau``) receives
    ``tau * i_t`` so that its potential follows ``v_t = (1 - 1/tau) v_{t-1} + i_t``.
    ``neuron="bdett"`` uses :class:`DynamicThreshold` on ``i_t`` instead.
    """

    def __init__(self, n_in: int, n_out: int, *, decay: float = 0.5, tau: float = 4.0,
                 v_th: float = 0.5, neuron: str = "lif"):
        super().__init__()
        if neuron not in NEURONS:
            raise ValueError(f"neuron={neuron!r} is not known; choose one of {list(NEURONS)}")
        self.linear = nn.Linear(n_in, n_out)
        self.decay = float(decay)
        self.kind = neuron
        if neuron == "lif":
            self.neuron = LIF(shape=(n_out,), tau=tau, v_th=v_th, reset="hard", v_reset=0.0,
                              surrogate="rectangular", alpha=1.0, detach_reset=True)
        else:
            self.neuron = DynamicThreshold(n_out, tau=tau, v_th=v_th)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.linear(x)
        cur, i = [], torch.zeros_like(w[0])
        for t in range(w.shape[0]):
            i = self.decay * i + w[t]
            cur.append(i)
        cur = torch.stack(cur)
        if self.kind == "bdett":
            return self.neuron(cur)
        spikes, _ = self.neuron.run(cur * float(self.neuron.tau), state=None)
        return spikes


class PopulationDecoder(nn.Module):
    """Rates ``[B, A*pop]`` -> actions ``[B, A]`` in ``[low, high]`` (module docstring)."""

    def __init__(self, act_dim: int, pop: int, low, high):
        super().__init__()
        self.act_dim, self.pop = act_dim, pop
        bound = 1.0 / math.sqrt(pop)
        self.weight = nn.Parameter(torch.empty(act_dim, pop).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(act_dim).uniform_(-bound, bound))
        low = torch.as_tensor(low, dtype=torch.float32).expand(act_dim).clone()
        high = torch.as_tensor(high, dtype=torch.float32).expand(act_dim).clone()
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("scale", (high - low) / 2)

    def forward(self, rates: torch.Tensor) -> torch.Tensor:
        r = rates.view(-1, self.act_dim, self.pop)
        return self.center + self.scale * torch.tanh((r * self.weight).sum(-1) + self.bias)


class PopSANActor(nn.Module):
    """Population-coded spiking actor (Tang et al., CoRL 2020) built from membra neurons.

    Args:
        obs_dim, act_dim: observation and action sizes.
        pop_in, pop_out: neurons per observation dim / per action dim.
        hidden: widths of the spiking hidden layers.
        T: simulation steps per control step.
        encoding: ``"deterministic"`` or ``"stochastic"``.
        neuron: ``"lif"`` (PopSAN's static threshold) or ``"bdett"``
            (:class:`DynamicThreshold`).
        act_low, act_high: the action box (scalars or per dim).

    ``actor(obs)`` takes *raw* observations ``[B, obs_dim]``, z-scores and clips them with
    :attr:`obs_norm` (frozen unless training updates it) and returns actions ``[B, act_dim]``.
    The adaptable synapses are :meth:`synaptic_layers` (hidden layers and the output-population
    layer; encoder and decoder are not adapted).
    """

    def __init__(self, obs_dim: int, act_dim: int, pop_in: int = 10, pop_out: int = 10,
                 hidden=(256, 256), T: int = 5, encoding: str = "deterministic",
                 act_low=-1.0, act_high=1.0, neuron: str = "lif"):
        super().__init__()
        for name, v in (("obs_dim", obs_dim), ("act_dim", act_dim), ("pop_in", pop_in),
                        ("pop_out", pop_out), ("T", T)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        hidden = tuple(int(h) for h in hidden)
        self.config = dict(obs_dim=obs_dim, act_dim=act_dim, pop_in=pop_in, pop_out=pop_out,
                           hidden=list(hidden), T=T, encoding=encoding,
                           act_low=_as_list(act_low), act_high=_as_list(act_high))
        if neuron != "lif":  # older checkpoints have no key: they are "lif"
            self.config["neuron"] = neuron
        self.obs_norm = ObsNormalizer(obs_dim)
        self.encoder = PopulationEncoder(obs_dim, pop_in, T, encoding)
        sizes = (obs_dim * pop_in, *hidden, act_dim * pop_out)
        self.layers = nn.ModuleList(SpikingLayer(a, b, neuron=neuron)
                                    for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.decoder = PopulationDecoder(act_dim, pop_out, act_low, act_high)
        self.generator: torch.Generator | None = None

    def synaptic_layers(self) -> list[tuple[str, nn.Linear, nn.Module]]:
        """``(name, linear, spiking_module)`` pairs: the synapses DWAM and degradations act
        on, and the module whose output are their postsynaptic spikes."""
        return [(f"layers.{i}", layer.linear, layer) for i, layer in enumerate(self.layers)]

    def spikes(self, obs: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer spike tensors ``[T, B, n]`` (encoder first) for raw observations."""
        x = self.encoder(self.obs_norm(obs), self.generator)
        out = [x]
        for layer in self.layers:
            x = layer(x)
            out.append(x)
        return out

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not isinstance(obs, torch.Tensor) or obs.dim() != 2 or \
                obs.shape[1] != self.config["obs_dim"]:
            got = tuple(obs.shape) if isinstance(obs, torch.Tensor) else type(obs).__name__
            raise ValueError(f"PopSANActor expects observations [B, {self.config['obs_dim']}], "
                             f"got {got}")
        return self.decoder(self.spikes(obs)[-1].mean(0))

    @torch.no_grad()
    def act(self, obs) -> numpy.ndarray:  # noqa: F821
        """One control step for a single raw numpy observation -> numpy action."""
        x = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
        return self(x)[0].numpy()


def _as_list(v):
    if isinstance(v, torch.Tensor):
        return v.flatten().tolist()
    if hasattr(v, "tolist"):
        v = v.tolist()
    return [float(x) for x in v] if isinstance(v, (list, tuple)) else float(v)
