r"""Spiking neuron layers: :class:`LIF` and :class:`IF`.

Thin modules over :func:`membra.kernels.lif_sequence` / :func:`membra.kernels.if_sequence`
(equations in :mod:`membra.functional.neuron`). Input ``[T, B, *shape]``, output spikes of the
same shape. There is no hidden state between calls: every call starts from the initial
potential :math:`V_0` (``init_potential``), which can be

- ``0.0`` (default) or any float: a fixed constant (buffer);
- a tensor broadcastable to ``(1, *shape)``: fixed (buffer) or, with
  ``learnable_potential=True``, a parameter;
- ``"learnable"``: the learnable initial membrane potential (IMP), an ``nn.Parameter`` named
  ``init_potential`` of shape ``(1, *shape)``, initialised :math:`U(\text{init\_range})`, one
  value per neuron shared by all samples.

``layer(x)`` returns spikes; ``layer.run(x, state=None)`` returns ``(spikes, v_T)``;
``layer.step(x_t, state=None)`` returns ``(s_t, v_t)``. ``state=None`` means "start from V_0".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..functional.neuron import check_reset, check_tau, raw_from_tau, tau_from_raw
from ..functional.surrogate import check_alpha, get_surrogate
from ..kernels import neuron_sequence

__all__ = ["SpikingNeuron", "LIF", "IF"]


def _as_shape(shape) -> tuple[int, ...] | None:
    if shape is None:
        return None
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, Sequence) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(f"shape must be a tuple of positive ints (one sample), got {shape!r}")
    return tuple(shape)


class SpikingNeuron(nn.Module):
    """Common machinery of :class:`LIF` and :class:`IF` (validation, IMP, run/step)."""

    neuron: str = ""

    def __init__(self, shape=None, *, v_th: float = 1.0, v_reset: float = 0.0,
                 reset: str = "soft", surrogate: str = "sigmoid", alpha: float | None = None,
                 detach_reset: bool = True, init_potential=0.0,
                 init_range: tuple[float, float] = (0.4, 0.6),
                 learnable_potential: bool = False, backend: str | None = None):
        super().__init__()
        self.shape = _as_shape(shape)
        for name, val in (("v_th", v_th), ("v_reset", v_reset)):
            if not isinstance(val, (int, float)) or isinstance(val, bool) or \
                    not math.isfinite(val):
                raise ValueError(f"{name} must be a finite number, got {val!r}")
        check_reset(reset)
        get_surrogate(surrogate)
        check_alpha(alpha)
        if backend is not None:
            from ..kernels import list_backends
            if backend not in list_backends():
                raise ValueError(f"backend={backend!r} is not known; choose one of "
                                 f"{list_backends()}")
        self.v_th = float(v_th)
        self.v_reset = float(v_reset)
        self.reset = reset
        self.surrogate = surrogate
        self.alpha = get_surrogate(surrogate).alpha_or_default(alpha)
        self.detach_reset = bool(detach_reset)
        self.backend = backend
        self._init_potential(init_potential, init_range, learnable_potential)

    # ---- initial potential -------------------------------------------------------------
    def _init_potential(self, value, init_range, learnable: bool) -> None:
        name = type(self).__name__
        if isinstance(value, str):
            if value != "learnable":
                raise ValueError(f"init_potential={value!r} is not known; use a number, a "
                                 "tensor or 'learnable'")
            if self.shape is None:
                raise ValueError("init_potential='learnable' needs shape=(C, H, W) of one "
                                 f"sample (e.g. {name}(shape=(128,), init_potential="
                                 "'learnable'))")
            lo, hi = self._check_range(init_range)
            v0 = torch.empty(1, *self.shape).uniform_(lo, hi)
            self.init_potential = nn.Parameter(v0)
        elif isinstance(value, torch.Tensor):
            if not value.is_floating_point():
                raise TypeError(f"init_potential tensor must be floating point, got "
                                f"{value.dtype}")
            target = (1, *self.shape) if self.shape is not None else None
            if target is not None:
                try:
                    ok = torch.broadcast_shapes(value.shape, target) == target
                except RuntimeError:
                    ok = False
                if not ok:
                    raise ValueError(f"init_potential of shape {tuple(value.shape)} does not "
                                     f"broadcast to (1, *shape) = {target}")
            elif learnable:
                raise ValueError("learnable_potential=True needs shape= of one sample")
            v0 = value.detach().clone().float()
            if learnable:
                self.init_potential = nn.Parameter(v0)
            else:
                self.register_buffer("init_potential", v0)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and \
                math.isfinite(value):
            if learnable:
                if self.shape is None:
                    raise ValueError("learnable_potential=True needs shape= of one sample")
                self.init_potential = nn.Parameter(torch.full((1, *self.shape), float(value)))
            else:
                self.register_buffer("init_potential", torch.tensor(float(value)))
        else:
            raise TypeError(f"init_potential must be a number, a tensor or 'learnable', got "
                            f"{value!r}")

    @staticmethod
    def _check_range(init_range) -> tuple[float, float]:
        try:
            lo, hi = (float(v) for v in init_range)
        except (TypeError, ValueError):
            raise ValueError(
                f"init_range must be two numbers (low, high), got {init_range!r}") from None
        if not lo <= hi:
            raise ValueError(f"init_range must have low <= high, got {init_range!r}")
        return lo, hi

    @property
    def learnable_potential(self) -> bool:
        return isinstance(self.init_potential, nn.Parameter)

    @torch.no_grad()
    def resize_init_potential(self, new_shape, mode: str = "nearest") -> None:
        """Resize a per-neuron ``V_0`` to a new spatial size ``(C, H', W')`` explicitly.

        ``mode="nearest"`` interpolates the map; ``mode="mean"`` fills each channel with its
        spatial mean. The channel count must not change."""
        new_shape = _as_shape(new_shape)
        if mode not in ("nearest", "mean"):
            raise ValueError(f"mode={mode!r} is not known; choose 'nearest' or 'mean'")
        if self.shape is None or self.init_potential.dim() < 3 or len(new_shape) < 2 or \
                new_shape[0] != self.shape[0] or len(new_shape) != len(self.shape):
            raise ValueError(f"cannot resize init_potential of shape {self.shape} to "
                             f"{new_shape}: needs a per-neuron map with the same channels")
        v0 = self.init_potential.data
        if mode == "nearest":
            new = torch.nn.functional.interpolate(v0, size=new_shape[1:], mode="nearest")
        else:
            dims = tuple(range(2, v0.dim()))
            new = v0.mean(dim=dims, keepdim=True).expand(1, *new_shape).clone()
        if isinstance(self.init_potential, nn.Parameter):
            self.init_potential = nn.Parameter(new)
        else:
            self.init_potential = new
        self.shape = new_shape

    # ---- running -----------------------------------------------------------------------
    def _tau(self):
        return None

    def _check_input(self, x: torch.Tensor, step: bool) -> None:
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
        lead = 1 if step else 2
        if x.dim() < lead:
            want = "[B, *shape]" if step else "[T, B, *shape]"
            raise ValueError(f"{name} expects input {want}, got shape {tuple(x.shape)}")
        if self.shape is not None and tuple(x.shape[lead:]) != self.shape:
            raise ValueError(f"{name}(shape={self.shape}) got per-sample shape "
                             f"{tuple(x.shape[lead:])}")

    def _initial_state(self, x0: torch.Tensor, state):
        if state is None:
            return self.init_potential
        if not isinstance(state, torch.Tensor) or tuple(state.shape) != tuple(x0.shape):
            got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise ValueError(f"{type(self).__name__}: state must be a tensor of shape "
                             f"{tuple(x0.shape)} (one time step), got {got}")
        return state

    def run(self, x: torch.Tensor, state: torch.Tensor | None = None):
        """Spikes and final potential ``(spikes [T, B, *S], v_T [B, *S])`` from ``state``
        (``None``: the initial potential)."""
        self._check_input(x, step=False)
        v0 = self._initial_state(x[0], state)
        return neuron_sequence(
            x, v0, neuron=self.neuron, tau=self._tau(), v_th=self.v_th, v_reset=self.v_reset,
            reset=self.reset, surrogate=self.surrogate, alpha=self.alpha,
            detach_reset=self.detach_reset, backend=self.backend)

    def step(self, x_t: torch.Tensor, state: torch.Tensor | None = None):
        """One time step ``(s_t, v_t)`` for streaming and control loops; looping it over
        ``x`` gives exactly :meth:`run`."""
        self._check_input(x_t, step=True)
        s, v = self.run(x_t.unsqueeze(0), state)
        return s[0], v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes ``[T, B, *shape]``, starting from the initial potential."""
        return self.run(x)[0]

    def extra_repr(self) -> str:
        v0 = "learnable" if self.learnable_potential else (
            f"{self.init_potential.item():g}" if self.init_potential.numel() == 1
            else f"tensor{tuple(self.init_potential.shape)}")
        tau = self._tau()
        parts = [f"shape={self.shape}"] if self.shape is not None else []
        if tau is not None:
            learn = " (learnable)" if tau.requires_grad else ""
            parts.append(f"tau={float(tau.detach()):g}{learn}")
        parts += [f"v_th={self.v_th:g}", f"v_reset={self.v_reset:g}", f"reset={self.reset!r}",
                  f"surrogate={self.surrogate!r}", f"alpha={self.alpha:g}",
                  f"detach_reset={self.detach_reset}", f"init_potential={v0}"]
        return ", ".join(parts)


class LIF(SpikingNeuron):
    r"""Leaky integrate-and-fire neurons,
    :math:`h_t = v_{t-1} + (x_t - (v_{t-1} - v_{reset}))/\tau`, fire at :math:`h_t \ge v_{th}`.

    Defaults are the ``lif_event`` preset: ``tau=2``, ``v_th=1``, soft reset,
    ``detach_reset=True``, sigmoid surrogate with alpha 4. ``tau`` must be finite and
    ``>= 1``; it is a buffer, or with ``learnable_tau=True`` (parametric LIF, ``tau > 1``) the
    parameter ``raw_tau`` of :math:`\tau = 1 + \mathrm{softplus}(\mathrm{raw\_tau})`, a valid
    time constant after any finite optimizer step. ``layer.tau`` is the value either way.

    Args:
        shape: per-sample shape ``S`` (needed for ``init_potential="learnable"``; when given,
            inputs are checked against it).
        tau, v_th, v_reset, reset, surrogate, alpha, detach_reset: see
            :func:`membra.kernels.lif_sequence`.
        init_potential, init_range, learnable_potential: the initial potential (module doc).
        learnable_tau: learn ``tau``.
        backend: force a kernel backend for this layer.

    Shape:
        input ``[T, B, *S]``; output spikes ``[T, B, *S]``.

    Example::

        lif = LIF(shape=(128,), init_potential="learnable")
        spikes = lif(torch.randn(4, 32, 128))
    """

    neuron = "lif"

    def __init__(self, shape=None, *, tau: float = 2.0, v_th: float = 1.0, v_reset: float = 0.0,
                 reset: str = "soft", surrogate: str = "sigmoid", alpha: float | None = None,
                 detach_reset: bool = True, init_potential=0.0,
                 init_range: tuple[float, float] = (0.4, 0.6), learnable_potential: bool = False,
                 learnable_tau: bool = False, backend: str | None = None):
        super().__init__(shape, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate,
                         alpha=alpha, detach_reset=detach_reset, init_potential=init_potential,
                         init_range=init_range, learnable_potential=learnable_potential,
                         backend=backend)
        tau = check_tau(tau)
        if learnable_tau:
            self.raw_tau = nn.Parameter(raw_from_tau(tau))
        else:
            self.register_buffer("tau", torch.tensor(tau))

    @property
    def tau(self) -> torch.Tensor:
        """The time constant: ``1 + softplus(raw_tau)`` when learnable, else the buffer."""
        raw = self._parameters.get("raw_tau")
        if raw is not None:
            return tau_from_raw(raw)
        if "tau" in self._buffers:
            return self._buffers["tau"]
        raise AttributeError("tau")

    def _tau(self):
        return self.tau

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Take tau in either form, checked: a learnable LIF converts an entry ``tau`` (a
        learnable tau was stored as itself before the parametrisation) to ``raw_tau``, a fixed
        one converts ``raw_tau`` to ``tau``. An entry that is no valid tau is a ``ValueError``
        naming its key."""
        key_tau, key_raw = prefix + "tau", prefix + "raw_tau"
        if key_raw in state_dict:
            _state_tau(state_dict[key_raw], key_raw, raw=True)
        if key_tau in state_dict:
            tau = _state_tau(state_dict[key_tau], key_tau)
            if "raw_tau" in self._parameters and key_raw not in state_dict:
                try:
                    state_dict[key_raw] = raw_from_tau(tau, self.raw_tau.dtype)
                except ValueError as err:
                    raise ValueError(f"state_dict key {key_tau!r}: {err}") from None
                del state_dict[key_tau]
        elif key_raw in state_dict and "tau" in self._buffers:
            state_dict[key_tau] = tau_from_raw(state_dict.pop(key_raw).detach())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _state_tau(value, key: str, *, raw: bool = False) -> float:
    """The tau that state_dict entry ``key`` holds (``raw``: as ``raw_tau``), checked; errors
    name the key."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"state_dict key {key!r} must hold a tensor, got {type(value).__name__}")
    value = value.detach().to(torch.float64)
    try:
        return float(check_tau(tau_from_raw(value) if raw else value))
    except (TypeError, ValueError) as err:
        raise ValueError(f"state_dict key {key!r}: {err}") from None


class IF(SpikingNeuron):
    r"""Integrate-and-fire neurons, :math:`h_t = v_{t-1} + x_t`, fire at :math:`h_t \ge v_{th}`.

    Defaults are the ``if_sew`` preset: ``v_th=1``, hard reset to 0, ``detach_reset=False``,
    atan surrogate with alpha 2. Arguments as :class:`LIF` without ``tau``.
    """

    neuron = "if"

    def __init__(self, shape=None, *, v_th: float = 1.0, v_reset: float = 0.0,
                 reset: str = "hard", surrogate: str = "atan", alpha: float | None = None,
                 detach_reset: bool = False, init_potential=0.0,
                 init_range: tuple[float, float] = (0.4, 0.6), learnable_potential: bool = False,
                 backend: str | None = None):
        super().__init__(shape, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate,
                         alpha=alpha, detach_reset=detach_reset, init_potential=init_potential,
                         init_range=init_range, learnable_potential=learnable_potential,
                         backend=backend)
