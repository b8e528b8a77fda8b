r"""Further neuron models and the axonal delay: :class:`CubaLIF`, :class:`ALIF`, :class:`RLIF`,
:class:`Delay` (equations in :mod:`membra.functional.models`, kernels in
:mod:`membra.kernels.models`).

Every neuron model is a :class:`membra.nn.SpikingNeuron`: no hidden state between calls,
``layer(x)`` returns spikes, ``layer.run(x, state=None)`` returns ``(spikes, state_T)``,
``layer.step(x_t, state=None)`` returns ``(s_t, state_t)`` and ``layer.trace(x, state=None)``
returns ``NeuronTrace(spikes, v, h)`` (``v`` the membrane potential after the reset, ``h`` the
charged potential before the spike test, as for LIF; the second state is not in the trace:
``run`` returns its final value); ``state=None`` means "start from the initial state".
Every model takes any surrogate (a name, a :class:`membra.functional.Surrogate`, a callable).
The state is a pair of tensors ``[B, *shape]``:

==========  ===================  ===============================================================
model       state                initial value
==========  ===================  ===============================================================
CubaLIF     ``(v, i)``           ``init_potential`` / ``init_current`` (each constant, tensor or
                                 ``"learnable"``)
ALIF        ``(v, a)``           ``init_potential`` / ``init_adaptation`` (each constant, tensor
                                 or ``"learnable"``); ``a`` is the adaptation of the next step
RLIF        ``(v, s)``           ``init_potential``; the previous spikes ``s`` start at 0
==========  ===================  ===============================================================

Either element of a given ``state`` may be ``None`` (its initial value). :class:`Delay`'s state
is the history of its last ``max_delay`` inputs ``[max_delay, B, *shape]`` (zeros at start).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..functional.kinds import NeuronKind, as_shape
from ..functional.models import check_delays, keep_fraction
from ..kernels import NeuronTrace
from ..kernels.models import (
    alif_sequence,
    check_beta,
    cuba_lif_sequence,
    delay_sequence_fused,
    rlif_sequence,
)
from .neurons import IF, LIF, SpikingNeuron

__all__ = ["CubaLIF", "ALIF", "RLIF", "Delay", "neuron_class"]

#: ``U(low, high)`` of a learnable second state (current, adaptation) without a range
SECOND_STATE_RANGE = (0.0, 0.1)


class _TwoStateNeuron(SpikingNeuron):
    """A LIF-charged neuron with a second state ``c`` (named by ``second``) that has its own
    initial value (constant, tensor or learnable, as ``init_potential``)."""

    second: str = ""

    def _setup(self, tau, value, init_range, learnable) -> None:
        self.register_buffer("tau", torch.tensor(float(_checked_tau(tau, "tau"))))
        name = f"init_{self.second}"
        v0, v0_spec = self._pop_state("init_potential"), self.init_spec
        if init_range is None and isinstance(value, str) and value == "learnable":
            init_range = SECOND_STATE_RANGE
        try:
            self._init_potential(value, init_range, learnable)
        except (TypeError, ValueError) as err:
            msg = (str(err).replace("learnable_potential", f"learnable_{self.second}")
                   .replace("init_potential", name).replace("init_range", f"{name}_range"))
            raise type(err)(msg) from None
        self._put_state(name, self._pop_state("init_potential"))
        self._put_state("init_potential", v0)
        self.init_spec = v0_spec

    def _pop_state(self, name):
        if name in self._parameters:
            return self._parameters.pop(name)
        return self._buffers.pop(name)

    def _put_state(self, name, value) -> None:
        if isinstance(value, nn.Parameter):
            setattr(self, name, value)
        else:
            self.register_buffer(name, value)

    def _tau(self):
        return self.tau

    def _initial_pair(self, x0, state, second_default):
        """``(v0, c0)`` from ``state`` (``None`` or a pair whose elements may be ``None``)."""
        name = type(self).__name__
        if state is None:
            state = (None, None)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"{name}: state must be None or a pair ({self._state_names()}), "
                             f"got {type(state).__name__}")
        v0 = self._initial_state(x0, state[0])
        c0 = second_default if state[1] is None else self._initial_state(x0, state[1])
        return v0, c0

    def _state_names(self) -> str:
        return f"v, {self.second[0]}"

    def _tau_arg(self) -> float:
        """``tau`` as its cached float (:meth:`buffer_float`: no read per call)."""
        return self.buffer_float("tau")

    def _sequence(self, x, state, trace: bool):
        """The model's sequence kernel on ``x`` from ``state`` (see :meth:`run`)."""
        raise NotImplementedError

    def run(self, x, state=None):
        """``(spikes [T, B, *S], (v_T, c_T))`` from ``state = (v0, c0)`` (``None``: the
        initial values; ``c`` the second state, see the class doc)."""
        self._check_input(x, step=False)
        return self._sequence(x, state, trace=False)

    def trace(self, x, state=None) -> NeuronTrace:
        """``NeuronTrace(spikes, v, h)`` of every step from ``state`` (see the module doc;
        differentiable through ``v`` and ``h``)."""
        self._check_input(x, step=False)
        return self._sequence(x, state, trace=True)[0]

    def extra_repr(self) -> str:
        c0 = getattr(self, f"init_{self.second}")
        shown = "learnable" if isinstance(c0, nn.Parameter) else (
            f"{c0.item():g}" if c0.numel() == 1 else f"tensor{tuple(c0.shape)}")
        return f"{super().extra_repr()}, init_{self.second}={shown}"


def _kernel_kwargs(layer: SpikingNeuron) -> dict:
    """The model kernels' shared keyword arguments of ``layer``: :meth:`SpikingNeuron._kernel_args`
    without ``neuron`` (each model has its own entry), every scalar buffer a cached float."""
    kw = layer._kernel_args()
    del kw["neuron"]
    return kw


def _checked_tau(tau, name: str) -> float:
    keep_fraction(tau, name)  # raises naming `name`
    return float(tau)


_NEURON_DOC_ARGS = """
    Args:
        shape: per-sample shape ``S`` (needed for a learnable initial state).
        tau: membrane time constant (finite, ``>= 1``; a buffer).
        v_th, v_reset, reset, surrogate, alpha, detach_reset, backend: as :class:`LIF`.
        init_potential, init_range, learnable_potential: the initial membrane potential,
            as :class:`LIF` (``"learnable"``: the IMP)."""


class CubaLIF(_TwoStateNeuron):
    r"""Current-based LIF: :math:`i_t = (1 - 1/\tau_{syn}) i_{t-1} + x_t`, then LIF on
    :math:`i_t`; state ``(v, i)``.
    """ + _NEURON_DOC_ARGS + r"""
        tau_syn: synaptic time constant (finite, ``>= 1``; a buffer).
        init_current, init_current_range, learnable_current: the initial synaptic current,
            options as for the potential (default 0).

    Example::

        layer = CubaLIF(shape=(128,), tau_syn=4.0, init_potential="learnable")
        spikes = layer(torch.randn(8, 32, 128))
    """

    kind = NeuronKind.CUBA_LIF
    second = "current"

    def __init__(self, shape=None, *, tau: float = 2.0, tau_syn: float = 2.0,
                 v_th: float = 1.0, v_reset: float = 0.0, reset: str = "soft",
                 surrogate="sigmoid", alpha: float | None = None,
                 detach_reset: bool = True, init_potential=0.0,
                 init_range: tuple[float, float] | None = None,
                 learnable_potential: bool = False, init_current=0.0,
                 init_current_range: tuple[float, float] | None = None,
                 learnable_current: bool = False, backend: str | None = None):
        super().__init__(shape, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate,
                         alpha=alpha, detach_reset=detach_reset, init_potential=init_potential,
                         init_range=init_range, learnable_potential=learnable_potential,
                         backend=backend)
        self.register_buffer("tau_syn", torch.tensor(_checked_tau(tau_syn, "tau_syn")))
        self._setup(tau, init_current, init_current_range, learnable_current)

    def _sequence(self, x, state, trace: bool):
        """State ``(v, i)``; in a trace ``h`` is the potential charged by :math:`i_t`."""
        return cuba_lif_sequence(x, self._initial_pair(x[0], state, self.init_current),
                                 tau_syn=self.buffer_float("tau_syn"), trace=trace,
                                 **_kernel_kwargs(self))


class ALIF(_TwoStateNeuron):
    r"""Adaptive-threshold LIF (LSNN): threshold :math:`\theta_t = v_{th} + \beta a_t`,
    :math:`a_{t+1} = (1 - 1/\tau_a) a_t + s_t`, soft reset subtracts :math:`\theta_t`;
    state ``(v, a)`` with ``a`` the adaptation of the next step.
    """ + _NEURON_DOC_ARGS + r"""
        tau_adapt: adaptation time constant (finite, ``>= 1``; a buffer).
        beta: threshold gain per unit of adaptation (a finite number; a buffer).
        init_adaptation, init_adaptation_range, learnable_adaptation: the initial adaptation
            :math:`a_1`, options as for the potential (default 0).

    Example::

        layer = ALIF(shape=(128,), tau_adapt=20.0, beta=0.2, init_adaptation="learnable")
        spikes = layer(torch.randn(8, 32, 128))
    """

    kind = NeuronKind.ALIF
    second = "adaptation"

    def __init__(self, shape=None, *, tau: float = 2.0, tau_adapt: float = 20.0,
                 beta: float = 0.2, v_th: float = 1.0, v_reset: float = 0.0,
                 reset: str = "soft", surrogate="sigmoid", alpha: float | None = None,
                 detach_reset: bool = True, init_potential=0.0,
                 init_range: tuple[float, float] | None = None,
                 learnable_potential: bool = False, init_adaptation=0.0,
                 init_adaptation_range: tuple[float, float] | None = None,
                 learnable_adaptation: bool = False, backend: str | None = None):
        super().__init__(shape, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate,
                         alpha=alpha, detach_reset=detach_reset, init_potential=init_potential,
                         init_range=init_range, learnable_potential=learnable_potential,
                         backend=backend)
        self.register_buffer("tau_adapt", torch.tensor(_checked_tau(tau_adapt, "tau_adapt")))
        self.register_buffer("beta", torch.tensor(check_beta(beta)))
        self._setup(tau, init_adaptation, init_adaptation_range, learnable_adaptation)

    def _sequence(self, x, state, trace: bool):
        """State ``(v, a)``; in a trace ``h`` is compared with the moving threshold
        :math:`v_{th} + \beta a_t` (not ``v_th``), and ``v`` is after subtracting it."""
        return alif_sequence(x, self._initial_pair(x[0], state, self.init_adaptation),
                             tau_adapt=self.buffer_float("tau_adapt"),
                             beta=self.buffer_float("beta"), trace=trace, **_kernel_kwargs(self))


class RLIF(LIF):
    r"""Recurrent LIF: :math:`h_t = v_{t-1} + (x_t + W s_{t-1} - (v_{t-1} - v_{reset}))/\tau`,
    with the recurrent weight ``weight`` ``[N, N]`` (``N = prod(shape)``) an ``nn.Parameter``
    initialised as ``nn.Linear``'s; state ``(v, s)``, the initial spikes are 0. Arguments as
    :class:`LIF` (``tau`` may be learnable); ``shape`` is required. Each step is one GEMM and
    one LIF step (:func:`membra.kernels.models.rlif_sequence`).

    Example::

        layer = RLIF(shape=(64,), init_potential="learnable")
        spikes = layer(torch.randn(8, 32, 64))
    """

    kind = NeuronKind.RLIF

    def __init__(self, shape, **kwargs):
        if shape is None:
            raise ValueError("RLIF needs shape= of one sample (the recurrent weight is "
                             "[N, N], N = prod(shape))")
        super().__init__(shape, **kwargs)
        n = math.prod(self.shape)
        self.weight = nn.Parameter(torch.empty(n, n))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def _sequence(self, x, state, trace: bool):
        if state is None:
            state = (None, None)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError(f"RLIF: state must be None or a pair (v, s), got "
                             f"{type(state).__name__}")
        v0 = self._initial_state(x[0], state[0])
        s0 = None if state[1] is None else self._initial_state(x[0], state[1])
        return rlif_sequence(x, self.weight, (v0, s0), trace=trace, **_kernel_kwargs(self))

    def run(self, x, state=None):
        """``(spikes [T, B, *S], (v_T, s_T))`` from ``state = (v0, s0)`` (``None``: the
        initial potential and no spikes)."""
        self._check_input(x, step=False)
        return self._sequence(x, state, trace=False)

    def trace(self, x, state=None) -> NeuronTrace:
        """``NeuronTrace(spikes, v, h)`` of every step; ``h`` is charged by
        :math:`x_t + W s_{t-1}`."""
        self._check_input(x, step=False)
        return self._sequence(x, state, trace=True)[0]


class Delay(nn.Module):
    r"""Fixed integer axonal delays, as NIR's ``Delay`` node: :math:`y_t = x_{t - d}` per
    neuron, with ``d`` in ``[0, max_delay]``.

    Args:
        shape: per-sample shape ``S``.
        max_delay: the longest delay ``D`` (the length of the carried history).
        delays: an int (all neurons), or an integer tensor broadcastable to ``S`` (per neuron;
            ``(C, 1, 1)`` per channel); ``None``: every neuron ``max_delay``. A buffer.

    ``run(x, state=None)`` returns ``(y, history)`` where ``history [D, B, *S]`` holds the last
    ``D`` inputs (oldest first, zeros before the first step); ``step(x_t, state)`` one step.
    Steps before the start read zeros: ``forward`` has no hidden state between calls.
    """

    def __init__(self, shape, max_delay: int, delays=None):
        super().__init__()
        self.shape = as_shape(shape)
        if self.shape is None:
            raise ValueError("Delay needs shape= of one sample")
        self.max_delay = max_delay
        self.register_buffer("delays", check_delays(delays, self.shape, max_delay))

    def _check(self, x, lead: int) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"Delay expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() < lead or tuple(x.shape[lead:]) != self.shape:
            want = "[T, B, *shape]" if lead == 2 else "[B, *shape]"
            raise ValueError(f"Delay(shape={self.shape}) expects {want}, got shape "
                             f"{tuple(x.shape)}")

    def run(self, x, state=None):
        """``(y [T, B, *S], history [D, B, *S])`` from the history ``state`` (``None``:
        zeros)."""
        self._check(x, 2)
        want = (self.max_delay, *x.shape[1:])
        if state is None:
            state = x.new_zeros(want)
        elif not isinstance(state, torch.Tensor) or tuple(state.shape) != want:
            got = tuple(state.shape) if isinstance(state, torch.Tensor) else \
                type(state).__name__
            raise ValueError(f"Delay: state must be the history [max_delay, B, *shape] = "
                             f"{want}, got {got}")
        return delay_sequence_fused(x, state, self.delays)

    def step(self, x_t, state=None):
        """One step ``(y_t, history)``; looping it over ``x`` gives :meth:`run`."""
        self._check(x_t, 1)
        y, hist = self.run(x_t.unsqueeze(0), state)
        return y[0], hist

    def forward(self, x):
        """``x`` delayed per neuron, ``[T, B, *S]``, zeros before the first step."""
        return self.run(x)[0]

    def extra_repr(self) -> str:
        return f"shape={self.shape}, max_delay={self.max_delay}"


_CLASSES = {NeuronKind.LIF: LIF, NeuronKind.IF: IF, NeuronKind.CUBA_LIF: CubaLIF,
            NeuronKind.ALIF: ALIF, NeuronKind.RLIF: RLIF}


def neuron_class(neuron) -> type[SpikingNeuron]:
    """The layer class of a neuron kind (a :class:`membra.functional.NeuronKind` or its
    name): ``"lif"`` -> :class:`LIF`, ``"if"`` -> :class:`IF`, ``"cuba_lif"`` ->
    :class:`CubaLIF`, ``"alif"`` -> :class:`ALIF`, ``"rlif"`` -> :class:`RLIF`; an unknown
    name raises ``ValueError`` listing the valid ones."""
    return _CLASSES[NeuronKind.parse(neuron)]
