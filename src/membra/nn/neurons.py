r"""Spiking neuron layers: :class:`LIF` and :class:`IF`.

Thin modules over :func:`membra.kernels.lif_sequence` / :func:`membra.kernels.if_sequence`
(equations in :mod:`membra.functional.neuron`). Input ``[T, B, *shape]``, output spikes of the
same shape. There is no hidden state between calls: every call starts from the initial
potential :math:`V_0` (``init_potential``), which can be

- ``0.0`` (default) or any float: a fixed constant (buffer);
- a tensor broadcastable to ``(1, *shape)``: fixed (buffer) or, with
  ``learnable_potential=True``, a parameter;
- ``"learnable"``: the learnable initial membrane potential (IMP), an ``nn.Parameter`` named
  ``init_potential`` of shape ``(1, *shape)``, initialised :math:`U(\text{init\_range})`
  (default ``(0.4, 0.6)``; ``init_range`` with any other potential is an error), one value per
  neuron shared by all samples.

``layer(x)`` returns spikes; ``layer.run(x, state=None)`` returns ``(spikes, v_T)``;
``layer.step(x_t, state=None)`` returns ``(s_t, v_t)``; ``layer.trace(x, state=None)`` returns
``NeuronTrace(spikes, v, h)`` of every step. ``state=None`` means "start from V_0".
:func:`record` / :func:`recording` collect the traces of every layer of a model.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ..functional.kinds import InitPotential, NeuronKind, as_shape
from ..functional.neuron import check_reset, check_tau, raw_from_tau, tau_from_raw
from ..functional.surrogate import as_surrogate
from ..kernels import NeuronTrace, neuron_sequence, neuron_trace

__all__ = ["SpikingNeuron", "LIF", "IF", "NeuronTrace", "record", "recording"]


class SpikingNeuron(nn.Module):
    """Common machinery of :class:`LIF` and :class:`IF` (validation, IMP, run/step/trace).

    Everything is validated once here: the surrogate becomes a
    :class:`membra.functional.Surrogate` (``surrogate_fn``, alpha bound), the initial potential
    an :class:`membra.functional.InitPotential` (``init_spec``), ``v_th`` / ``v_reset`` float64
    buffers (in ``state_dict()``; a checkpoint without them keeps the constructor's values).
    """

    kind: NeuronKind

    def __init__(self, shape=None, *, v_th: float = 1.0, v_reset: float = 0.0,
                 reset: str = "soft", surrogate="sigmoid", alpha: float | None = None,
                 detach_reset: bool = True, init_potential=0.0,
                 init_range: tuple[float, float] | None = None,
                 learnable_potential: bool = False, backend: str | None = None):
        super().__init__()
        self.shape = as_shape(shape)
        for name, val in (("v_th", v_th), ("v_reset", v_reset)):
            if not isinstance(val, (int, float)) or isinstance(val, bool) or \
                    not math.isfinite(val):
                raise ValueError(f"{name} must be a finite number, got {val!r}")
        check_reset(reset)
        if backend is not None:
            from ..kernels import list_backends
            if backend not in list_backends():
                raise ValueError(f"backend={backend!r} is not known; choose one of "
                                 f"{list_backends()}")
        self.register_buffer("v_th", torch.tensor(float(v_th), dtype=torch.float64))
        self.register_buffer("v_reset", torch.tensor(float(v_reset), dtype=torch.float64))
        self.reset = reset
        self.surrogate_fn = as_surrogate(surrogate, alpha)
        self.detach_reset = bool(detach_reset)
        self.backend = backend
        self._init_potential(init_potential, init_range, learnable_potential)

    @property
    def surrogate(self) -> str:
        """The surrogate's name (``surrogate_fn`` is the :class:`Surrogate` itself)."""
        return self.surrogate_fn.name

    @property
    def alpha(self) -> float | None:
        """A built-in surrogate's alpha; ``None`` for a custom one."""
        return self.surrogate_fn.alpha

    # ---- initial potential -------------------------------------------------------------
    def _init_potential(self, value, init_range, learnable: bool) -> None:
        """Validate ``init_potential`` once (:class:`InitPotential`) and create it: a
        parameter ``init_potential`` when learnable, else a buffer of that name."""
        self.init_spec = InitPotential.parse(value, init_range=init_range, learnable=learnable,
                                             shape=self.shape)
        v0 = self.init_spec.initial_tensor(self.shape)
        if self.init_spec.kind == "learnable":
            self.init_potential = nn.Parameter(v0)
        else:
            self.register_buffer("init_potential", v0)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints written before ``v_th`` / ``v_reset`` were buffers lack them: keep the
        constructor's values."""
        for name in ("v_th", "v_reset"):
            state_dict.setdefault(prefix + name, self._buffers[name].detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def learnable_potential(self) -> bool:
        return isinstance(self.init_potential, nn.Parameter)

    @torch.no_grad()
    def resize_init_potential(self, new_shape, mode: str = "nearest") -> None:
        """Resize a per-neuron ``V_0`` to a new spatial size ``(C, H', W')`` explicitly.

        ``mode="nearest"`` interpolates the map; ``mode="mean"`` fills each channel with its
        spatial mean. The channel count must not change."""
        new_shape = as_shape(new_shape)
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

    def buffer_float(self, name: str, check=None) -> float:
        """The Python float of the 0-d buffer ``name`` (``v_th``, ``v_reset``, a fixed ``tau``),
        read once per change of the buffer: a new tensor (``.to()``, assignment), an in-place
        write (``load_state_dict`` copies in place, ``fill_``) or new storage. So a forward
        costs no host sync on an accelerator, and never uses a stale value. ``check(value)``
        validates a fresh read. While ``torch.compile`` traces, the buffer is read as before;
        while ``torch.export`` traces, the buffer itself is returned (the layer then runs the
        ``reference`` loop, which reads it in the exported graph)."""
        buf = self._buffers[name]
        if torch.compiler.is_compiling():
            return buf if torch.compiler.is_exporting() else float(buf)
        cache = self.__dict__.setdefault("_float_cache", {})
        key = (buf._version, buf.data_ptr())
        hit = cache.get(name)
        if hit is not None and hit[0] is buf and hit[1] == key:
            return hit[2]
        value = float(buf)
        if check is not None:
            check(value)
        cache[name] = (buf, key, value)
        return value

    def _tau_arg(self):
        """``tau`` as the kernels take it (``None`` without a time constant)."""
        return None

    def _kernel_args(self) -> dict:
        return dict(neuron=self.kind, tau=self._tau_arg(), v_th=self.buffer_float("v_th"),
                    v_reset=self.buffer_float("v_reset"), reset=self.reset,
                    surrogate=self.surrogate_fn, detach_reset=self.detach_reset,
                    backend=self.backend)

    def run(self, x: torch.Tensor, state: torch.Tensor | None = None):
        """Spikes and final potential ``(spikes [T, B, *S], v_T [B, *S])`` from ``state``
        (``None``: the initial potential)."""
        self._check_input(x, step=False)
        return neuron_sequence(x, self._initial_state(x[0], state), **self._kernel_args())

    def trace(self, x: torch.Tensor, state: torch.Tensor | None = None) -> NeuronTrace:
        """Every step from ``state`` (``None``: the initial potential):
        ``NeuronTrace(spikes, v, h)``, each ``[T, B, *S]``; ``h`` the charged potential before
        the spike test, ``v`` the potential after the reset (``v[-1]`` is ``run``'s ``v_T``).
        Computed by the fused kernel and differentiable through ``v`` and ``h`` too."""
        self._check_input(x, step=False)
        return neuron_trace(x, self._initial_state(x[0], state), **self._kernel_args())

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
        parts += [f"v_th={float(self.v_th):g}", f"v_reset={float(self.v_reset):g}",
                  f"reset={self.reset!r}", f"surrogate={self.surrogate!r}"]
        if self.alpha is not None:
            parts.append(f"alpha={self.alpha:g}")
        parts += [f"detach_reset={self.detach_reset}", f"init_potential={v0}"]
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

    kind = NeuronKind.LIF

    def __init__(self, shape=None, *, tau: float = 2.0, v_th: float = 1.0, v_reset: float = 0.0,
                 reset: str = "soft", surrogate="sigmoid", alpha: float | None = None,
                 detach_reset: bool = True, init_potential=0.0,
                 init_range: tuple[float, float] | None = None,
                 learnable_potential: bool = False,
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

    def _tau_arg(self):
        """A fixed ``tau`` as its cached, checked float (:meth:`buffer_float`); a learnable
        one (or a buffer set to require grad) as the tensor."""
        buf = self._buffers.get("tau")
        if buf is None or buf.requires_grad or torch.compiler.is_compiling():
            return self.tau
        return self.buffer_float("tau", check=check_tau)

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

    kind = NeuronKind.IF

    def __init__(self, shape=None, *, v_th: float = 1.0, v_reset: float = 0.0,
                 reset: str = "hard", surrogate="atan", alpha: float | None = None,
                 detach_reset: bool = False, init_potential=0.0,
                 init_range: tuple[float, float] | None = None,
                 learnable_potential: bool = False,
                 backend: str | None = None):
        super().__init__(shape, v_th=v_th, v_reset=v_reset, reset=reset, surrogate=surrogate,
                         alpha=alpha, detach_reset=detach_reset, init_potential=init_potential,
                         init_range=init_range, learnable_potential=learnable_potential,
                         backend=backend)


@contextlib.contextmanager
def recording(model: nn.Module):
    """Within the block, every call of a :class:`SpikingNeuron` in ``model`` stores its
    :meth:`~SpikingNeuron.trace` in the yielded dict under the module's name
    (``model.named_modules()``; ``""`` for ``model`` itself). A module called again in the
    same block (a shared layer) adds ``"name#1"``, ``"name#2"``, ... in call order. The layer
    still returns the trace's spikes, which are its ``forward`` output, so the model computes
    what it always does; nothing of the model is changed after the block (the per-instance
    ``forward`` is removed even when the block raises)."""
    neurons = [(name, m) for name, m in model.named_modules() if isinstance(m, SpikingNeuron)]
    if not neurons:
        raise ValueError(f"record: {type(model).__name__} has no spiking neuron layer "
                         "(membra.nn.SpikingNeuron) to record")
    traces: dict[str, NeuronTrace] = {}
    calls: dict[str, int] = {}

    def traced_forward(name: str, layer: SpikingNeuron):
        def forward(x):
            tr = layer.trace(x)
            n = calls[name] = calls.get(name, -1) + 1
            traces[name if n == 0 else f"{name}#{n}"] = tr
            return tr.spikes
        return forward

    try:
        for name, layer in neurons:
            layer.forward = traced_forward(name, layer)
        yield traces
    finally:
        for _, layer in neurons:
            vars(layer).pop("forward", None)


def record(model: nn.Module, *args, **kwargs) -> dict[str, NeuronTrace]:
    """Run ``model(*args, **kwargs)`` once and return every neuron layer's trace by module
    name (see :func:`recording` for names and shared layers)."""
    with recording(model) as traces:
        model(*args, **kwargs)
    return traces
