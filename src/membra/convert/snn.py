"""Converted spiking networks: the simulation of naive IF conversion and PASCAL spike
accumulation over the captured graph (:mod:`membra.convert.graph`, BN folded by
:mod:`membra.convert.fold`). The neurons and their equations are in
:mod:`membra.convert.neurons`; spikes, SOPs and the report in :mod:`membra.convert.accounting`.

**PASCAL** (``mode="pascal"``): layer ``l`` emits during a window of ``L_l`` steps that opens
when its inputs' windows have closed (:meth:`ConvertedSNN.schedule`). A Conv/Linear spreads
its bias over the input window in exact shares (:func:`~membra.convert.neurons.bias_shares`);
an averaging pool averages its integrated input window once, as the ANN does, so that nothing
rounds differently from the folded ANN (docs/conversion.md, "What is exact").
``simulate="counts"`` skips the time loop: counts times θ through the ANN's own ops, bitwise
equal to the ANN. Time steps: ``1 + sum of L`` on the longest path (plus the correction steps
of the signed neuron).

**Naive** (``mode="naive"``): each QCFS becomes an IF neuron with threshold λ, ``v(0) = λ/2``,
soft reset and output ``λ s(t)``; all layers run for the same ``T`` steps on the analog input
repeated every step (the static stem before the first neuron is computed once per sample),
biases added every step; the output is the running mean of the logits.

**Layers.** Every QCFS *call site* becomes its own spiking layer (``PascalNeuron`` or
``NaiveIF``, listed in ``ConvertedSNN.ops`` next to the folded ANN's Conv/Linear modules),
with its own λ, L, window and spike counts; a module called twice is two layers
(:func:`~membra.convert.graph.call_site_names`).

Length (about 420 lines): one class, :class:`ConvertedSNN`, holds the input checks and both
simulations (PASCAL's windows and the naive per-step loop) over the same captured graph; its
neurons, BN folding and accounting already live in their own modules.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .accounting import ConversionReport, SNNAccounting, StaticInput
from .fold import fold_bn
from .graph import AVGPOOLS, UnsupportedLayerError, _Reshape, capture
from .neurons import (
    NaiveIF,
    PascalNeuron,
    _integrate,
    bias_shares,
    signed_counts,
    two_phase_counts,
)
from .qcfs import qcfs_counts

__all__ = ["to_snn", "ConvertedSNN", "ConversionReport", "two_phase_counts", "signed_counts",
           "bias_shares", "qcfs_counts", "PascalNeuron", "NaiveIF", "StaticInput"]


def _fold_time(module, x: torch.Tensor) -> torch.Tensor:
    """``module`` on every step of ``x [W, B, ...]`` (time folded into the batch)."""
    W, B = x.shape[:2]
    y = module(x.reshape(W * B, *x.shape[2:]))
    return y.reshape(W, B, *y.shape[1:])


def _weight_only(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` without its bias (a zero bias: ``+ 0`` is exact), called as the module
    so that forward hooks (:func:`membra.energy.sops`) see it."""
    return torch.func.functional_call(module, {"bias": torch.zeros_like(module.bias)}, (x,))


@dataclass
class _Win:
    """Output of an op over global time: ``values [W, B, ...]`` for steps ``start..start+W``."""

    start: int
    values: torch.Tensor

    @property
    def end(self) -> int:
        return self.start + self.values.shape[0]


def _align(*wins: _Win) -> tuple[int, list[torch.Tensor]]:
    """The windows' values zero-padded in time to their common span ``[start, end)`` (with
    ``F.pad``, which ``membra.energy.sops`` follows as a copy)."""
    start, end = min(w.start for w in wins), max(w.end for w in wins)

    def pad(w):
        before, after = w.start - start, end - w.end
        if not before and not after:
            return w.values
        return F.pad(w.values, (0, 0) * (w.values.dim() - 1) + (before, after))

    return start, [pad(w) for w in wins]


def _cat_dim(dim: int) -> int:
    """The ANN's ``torch.cat`` dimension on a time-first window ``[W, B, ...]``."""
    return dim + 1 if dim >= 0 else dim


class ConvertedSNN(SNNAccounting, nn.Module):
    """A converted network; build it with :func:`to_snn`. ``forward(x)`` takes the ANN's input
    ``[B, ...]`` and returns logits ``[B, K]`` (naive: the mean over ``T`` steps, or every
    step's running mean ``[T, B, K]`` with ``return_all_steps=True``).

    ``net`` is the BN-folded ANN (a ``torch.fx.GraphModule``, shared modules given one copy
    per call) and ``ops`` its operations in topological order (:class:`~membra.convert.graph.Op`:
    ``kind``, call-site ``path``, ``inputs``, ``module``; a ``qcfs`` op's ``neuron`` is its
    :class:`PascalNeuron` / :class:`NaiveIF`). After a call, ``counts`` holds each QCFS call
    site's spike count per neuron, ``windows`` its emission window and :meth:`report` the
    per-call-site table."""

    def __init__(self, model: nn.Module, *, mode: str, neuron: str, bias: str, simulate: str,
                 T: int | None, dtype, allow_spike_maxpool: bool, example_input=None):
        super().__init__()
        self.mode, self.neuron, self.bias, self.simulate = mode, neuron, bias, simulate
        self.T, self.dtype = T, dtype
        self.net, self.ops = capture(fold_bn(model))
        if dtype is not None:
            self.net = self.net.to(dtype)
        self._check(allow_spike_maxpool)
        training = [p or type(model).__name__ for p, m in model.named_modules() if m.training]
        if training:
            warnings.warn(f"converting a model left in train() mode ({len(training)} module(s), "
                          f"e.g. {training[0]!r}): the SNN uses BatchNorm's running statistics "
                          "and no dropout, as in eval(); call model.eval() before to_snn",
                          UserWarning, stacklevel=3)
        for op in self.ops:
            if op.kind == "qcfs":
                op.neuron = NaiveIF(op.module.lam) if mode == "naive" else \
                    PascalNeuron(op.module.lam, op.module.L, neuron)
        self.neurons = nn.ModuleList([op.neuron for op in self.ops if op.neuron is not None])
        self._rank = self._input_rank()
        self.counts: dict[str, torch.Tensor] = {}
        self.reverse: dict[str, torch.Tensor] = {}
        self.windows: dict[str, tuple[int, int]] = {}
        self._batch = 0
        self._input_shape: tuple[int, ...] = ()
        self._last_input: torch.Tensor | None = None
        self._counted = None          # the SOPReport of run_counted's simulation
        if example_input is not None:
            self._check_example(example_input)

    # -- validation ---------------------------------------------------------------------
    def _check(self, allow_spike_maxpool: bool) -> None:
        if not any(op.kind == "qcfs" for op in self.ops):
            raise UnsupportedLayerError(
                type(self.net).__name__, "no QCFS activation",
                "the model has no QCFS layer, so nothing becomes a spiking neuron: build it "
                "with nn.ReLU modules, call membra.convert.replace_relu(model, L=...) and "
                "train it with QCFS, or calibrate a trained ReLU net with "
                "membra.convert.quantize_relu(model, data, L=...), before converting")
        users: dict[int, list[int]] = {}
        for i, op in enumerate(self.ops):
            for j in op.inputs:
                users.setdefault(j, []).append(i)
            if op.kind == "bn":
                raise UnsupportedLayerError(op.path, type(op.module).__name__,
                                            "a BatchNorm must follow a Conv/Linear")
        for i, op in enumerate(self.ops):
            if op.kind == "maxpool":
                src = self.ops[op.inputs[0]]
                if self.mode == "naive" and not allow_spike_maxpool:
                    raise UnsupportedLayerError(
                        op.path, type(op.module).__name__,
                        "naive conversion cannot max-pool rates: use AvgPool2d before "
                        "training, convert with mode='pascal', or pass "
                        "allow_spike_maxpool=True (per-step max over spikes, approximate)")
                if src.kind != "qcfs":
                    raise UnsupportedLayerError(
                        op.path, type(op.module).__name__,
                        f"MaxPool must act directly on the spikes of a QCFS layer, but its "
                        f"input is {src.path!r} ({src.kind}); move it after the activation")
            if op.kind == "add":
                nxt = [self.ops[u] for u in users.get(i, [])]
                if not nxt or any(n.kind not in ("qcfs", "output") for n in nxt):
                    raise UnsupportedLayerError(
                        op.path, "residual add", "a residual sum must feed a QCFS (or be the "
                        "output): the neuron has to integrate both branches before firing")

    def _check_example(self, x) -> None:
        """Run the folded ANN on ``example_input`` once: a shape that does not fit raises
        here, at conversion, naming the input."""
        self._check_input(x)
        x = x.to(self.dtype) if self.dtype is not None else x
        try:
            with torch.no_grad():
                self.net(x)
        except RuntimeError as err:
            raise ValueError(f"example_input of shape {tuple(x.shape)} does not run through "
                             f"the model ({err})") from None
        self._rank = x.dim()

    # -- simulation ---------------------------------------------------------------------
    def _input_rank(self) -> int | None:
        """Dimensions of the ANN's input ``[B, ...]`` when the first Conv/Linear fixes them
        (no reshape before it): Linear 2, Conv1d 3, Conv2d 4."""
        for op in self.ops:
            if op.kind == "weight":
                return {nn.Linear: 2, nn.Conv1d: 3, nn.Conv2d: 4}[type(op.module)]
            if isinstance(op.module, (nn.Flatten, _Reshape)):
                return None
        return None

    def _check_input(self, x) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("the converted SNN takes a floating-point input tensor [B, ...], "
                            f"got {getattr(x, 'dtype', type(x).__name__)}")
        if self._rank is not None and x.dim() != self._rank:
            shape = tuple(x.shape)
            if x.dim() == self._rank + 1:
                raise ValueError(f"input of shape {shape} has one dimension too many: conversion "
                                 f"takes the ANN's input [B, ...] ({self._rank}-D here), not a "
                                 "time-first [T, B, ...] sequence; the ANN sees each sample "
                                 "once, so pass one step, e.g. x[0]")
            raise ValueError(f"input of shape {shape} is {x.dim()}-D; the ANN's first layer "
                             f"takes {self._rank}-D input [B, ...]")
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ValueError(f"input of shape {tuple(x.shape)} holds {bad} NaN/inf value(s); "
                             "the ANN's output would be NaN there, so the SNN refuses it "
                             "instead of returning finite logits")

    def forward(self, x: torch.Tensor, return_all_steps: bool = False) -> torch.Tensor:
        return self._run(x, return_all_steps, self.simulate)

    def _run(self, x: torch.Tensor, return_all_steps: bool, simulate: str) -> torch.Tensor:
        self._check_input(x)
        if self.dtype is not None:
            x = x.to(self.dtype)
        self.counts, self.reverse, self.windows = {}, {}, {}
        self._counted = None
        self._batch, self._input_shape = x.shape[0], tuple(x.shape[1:])
        self._last_input = x.detach()
        with torch.no_grad():
            try:
                if self.mode == "naive":
                    return self._naive(x, return_all_steps)
                if simulate == "counts":
                    return self._counts(x)
                return self._pascal(x)
            except RuntimeError as err:
                raise ValueError(f"the network does not run on an input of shape "
                                 f"{tuple(x.shape)} ({err}); the SNN takes the ANN's input "
                                 "[B, ...], not a time-first [T, B, ...] sequence") from None

    def _counts(self, x):
        out, self.counts = qcfs_counts(self.net, x)
        self.schedule()
        return out

    def schedule(self) -> int:
        """The emission window ``[start, end)`` of every spiking layer from the levels alone
        (no forward pass), as the temporal simulation runs them; sets ``windows`` and returns
        the time steps. PASCAL: the input holds step 0; a weight/reshape/max-pool op keeps its
        input's window, an average pool over a window of ``W > 1`` steps delivers at its last
        step, a sum or concatenation spans its inputs' windows, and a QCFS of level ``L`` opens
        when its input window closes (plus the signed neuron's ``max(W, L) - 1`` correction
        steps) and lasts ``L``: ``1 + sum L`` on the longest path for the two-phase neuron.
        Naive: every layer runs ``[0, T)``."""
        if self.mode == "naive":
            self.windows = {op.path: (0, self.T) for op in self.ops if op.kind == "qcfs"}
            self._T_total = self.T
            return self.T
        self.windows = {}
        win: dict[int, tuple[int, int]] = {}
        for i, op in enumerate(self.ops):
            ins = [win[j] for j in op.inputs]
            if op.kind == "input":
                win[i] = (0, 1)
            elif op.kind == "qcfs":
                (s, e), L = ins[0], op.neuron.L
                start = e + op.neuron.delay(e - s)
                win[i] = self.windows[op.path] = (start, start + L)
            elif isinstance(op.module, AVGPOOLS) and ins[0][1] - ins[0][0] > 1:
                win[i] = (ins[0][1] - 1, ins[0][1])
            else:
                win[i] = (min(w[0] for w in ins), max(w[1] for w in ins))
        self._T_total = win[len(self.ops) - 1][1]
        return self._T_total

    def _pascal(self, x):
        env: dict[int, _Win] = {}
        for i, op in enumerate(self.ops):
            if op.kind == "input":
                env[i] = _Win(0, x.unsqueeze(0))
                continue
            if op.kind == "output":
                w = env[op.inputs[0]]
                self._T_total = w.end
                return _integrate(w.values)
            w = env[op.inputs[0]]
            if op.kind == "weight":
                env[i] = _Win(w.start, self._currents(op.module, w.values))
            elif isinstance(op.module, AVGPOOLS) and w.values.shape[0] > 1:
                # averaging rounds (divisors 9, 6, ...): average the integrated window once,
                # as the ANN does, and deliver it at the window's last step
                pooled = op.module(_integrate(w.values)).unsqueeze(0)
                env[i] = _Win(w.end - 1, pooled)
            elif op.kind in ("linear", "maxpool"):
                env[i] = _Win(w.start, _fold_time(op.module, w.values))
            elif op.kind == "add":
                start, (a, b) = _align(w, env[op.inputs[1]])
                env[i] = _Win(start, a + b)
            elif op.kind == "cat":
                start, parts = _align(*(env[j] for j in op.inputs))
                env[i] = _Win(start, torch.cat(parts, _cat_dim(op.fn)))
            elif op.kind == "qcfs":
                values = op.neuron(w.values)
                start = w.end + op.neuron.delay(w.values.shape[0])
                self.counts[op.path] = op.neuron.last_spikes.sum(0)
                if op.neuron.reverse is not None:
                    self.reverse[op.path] = op.neuron.reverse
                self.windows[op.path] = (start, start + op.neuron.L)
                env[i] = _Win(start, values)
        raise RuntimeError("captured graph has no output")  # pragma: no cover

    def _currents(self, module: nn.Module, values: torch.Tensor) -> torch.Tensor:
        """Per-step currents ``[W, B, ...]`` of a Conv/Linear on an input window of ``W``
        steps. The bias enters exactly once in total: one step runs the ANN's own layer;
        ``bias="split"`` adds :func:`bias_shares` (exact) at each step, ``"first"`` adds ``b``
        at the first step."""
        if values.shape[0] == 1 or module.bias is None:
            return _fold_time(module, values)
        cur = _fold_time(lambda a: _weight_only(module, a), values)
        shape = (1, -1) + (1,) * (cur.dim() - 3)
        if self.bias == "split":
            shares = bias_shares(module.bias, values.shape[0])
            return cur + shares.view(shares.shape[0], *shape)
        return torch.cat([cur[:1] + module.bias.view(1, *shape), cur[1:]])

    def _naive(self, x, return_all_steps):
        """The naive simulation over ``T`` steps. The static stem (every op before the first
        QCFS, fed by the input alone) runs once on ``x [B, ...]``; its value is the same at
        every step, so it is repeated over time (a view) where a time-first op needs it."""
        T = self.T
        env: dict[int, torch.Tensor] = {}
        static: set[int] = set()

        def steps(j):
            return env[j].unsqueeze(0).expand(T, *env[j].shape) if j in static else env[j]

        for i, op in enumerate(self.ops):
            if op.kind == "input":
                env[i] = x
                static.add(i)
                continue
            if op.kind == "output":
                y = steps(op.inputs[0])
                ts = torch.arange(1, T + 1, dtype=y.dtype, device=y.device)
                running = y.cumsum(0) / ts.view(-1, *[1] * (y.dim() - 1))
                self._T_total = T
                return running if return_all_steps else running[-1]
            if op.kind != "qcfs" and all(j in static for j in op.inputs):
                env[i] = self._static_op(op, [env[j] for j in op.inputs])
                static.add(i)
                continue
            a = steps(op.inputs[0])
            if op.kind in ("weight", "linear", "maxpool"):
                env[i] = _fold_time(op.module, a)
            elif op.kind == "add":
                env[i] = a + steps(op.inputs[1])
            elif op.kind == "cat":
                env[i] = torch.cat([steps(j) for j in op.inputs], _cat_dim(op.fn))
            elif op.kind == "qcfs":
                env[i] = op.neuron(a)
                self.counts[op.path] = op.neuron.last_spikes.sum(0)
                self.windows[op.path] = (0, T)
        raise RuntimeError("captured graph has no output")  # pragma: no cover

    @staticmethod
    def _static_op(op, args: list[torch.Tensor]) -> torch.Tensor:
        """A non-spiking op of the folded ANN on one step's values ``[B, ...]``."""
        if op.kind == "add":
            return args[0] + args[1]
        if op.kind == "cat":
            return torch.cat(args, op.fn)
        return op.module(args[0])

_MODES = ("pascal", "naive")
_NEURONS = ("two_phase", "signed")
_BIAS = ("split", "first")
_SIMULATE = ("temporal", "counts")


def to_snn(model: nn.Module, mode: str = "pascal", *, neuron: str = "two_phase",
           bias: str = "split", simulate: str = "temporal", T: int | None = None,
           dtype: torch.dtype | None = None, allow_spike_maxpool: bool = False,
           example_input: torch.Tensor | None = None) -> ConvertedSNN:
    """Convert a QCFS ANN (BN folded here) into a spiking network.

    Args:
        model: the trained ANN with :class:`~membra.convert.QCFS` activations (eval mode is
            used; the model itself is not modified).
        mode: ``"pascal"`` (exact: equal to the ANN) or ``"naive"`` (IF neurons, rate code).
        neuron: PASCAL neuron, ``"two_phase"`` or ``"signed"``.
        bias: PASCAL bias injection over an input window of ``T_in > 1`` steps, ``"split"``
            (exact shares of ``b`` at each step, :func:`bias_shares`) or ``"first"`` (``b`` at
            the window's first step); a one-step window runs the ANN's own layer.
        simulate: PASCAL ``"temporal"`` (step by step, IF neurons of membra.kernels) or
            ``"counts"`` (counts times θ through the ANN's ops: bitwise equal to the ANN).
        T: time steps of naive mode.
        dtype: run the SNN in this dtype (``torch.float64`` for exactness checks).
        allow_spike_maxpool: naive mode only, max over spikes per step (approximate).
        example_input: an input ``[B, ...]`` run through the folded ANN once at conversion,
            so that a shape the model does not take is an error here, not at the first call.

    The model is traced with torch.fx; each QCFS *call* becomes its own spiking layer (a
    module called twice is two layers, ``path@1`` and ``path@2``); anything outside the
    supported-layer table raises :class:`UnsupportedLayerError` naming the node and its
    source line.
    """
    for name, value, valid in (("mode", mode, _MODES), ("neuron", neuron, _NEURONS),
                               ("bias", bias, _BIAS), ("simulate", simulate, _SIMULATE)):
        if value not in valid:
            raise ValueError(f"{name} must be one of {valid}, got {value!r}")
    if mode == "naive":
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"naive conversion needs T, a positive int of time steps, got {T!r}")
    elif T is not None:
        raise ValueError("T is for mode='naive'; PASCAL's time steps follow from the levels L")
    return ConvertedSNN(model, mode=mode, neuron=neuron, bias=bias, simulate=simulate, T=T,
                        dtype=dtype, allow_spike_maxpool=allow_spike_maxpool,
                        example_input=example_input)
