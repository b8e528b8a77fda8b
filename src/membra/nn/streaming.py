r"""Streaming: run a time-first model one time step per call, carrying every neuron's state.

``stream = Streaming(model)``; ``y_t = stream(x_t)`` takes one step ``x_t [B, ...]`` and
returns that step's output (``model``'s output for ``T = 1`` without the time axis);
``stream.reset()`` starts again from the initial states (initial potentials, learnable IMP
included). Looping over ``x`` gives ``model(x)`` step by step: equal spikes, outputs equal
within float rounding.

How: during a call each stateful layer (every :class:`membra.nn.SpikingNeuron` — LIF, IF,
CubaLIF, ALIF, RLIF — and :class:`membra.nn.Delay`) runs ``layer.run(x, state)`` from the
state it reached on the previous call instead of its initial state; the model's own
``forward`` is unchanged, so :class:`membra.nn.TimeDistributed` layers and custom blocks
(SEW residuals) work per step with ``T = 1``.

Rules:

- **Readouts** (:class:`membra.nn.Readout` inside the model): ``"per_step"`` passes the step
  through; ``"last"`` gives the current step's output; ``"mean"`` gives the running mean of
  the outputs so far, :math:`\frac1t \sum_{k \le t} O_k`, so after ``T`` calls it is the mean
  readout of ``model(x)``. The time axis is then already gone and the output is returned as is.
- **Batch statistics**: a BatchNorm in training mode normalises over the ``T*B`` samples of a
  whole sequence, one step has ``B``: streaming it would not reproduce ``model(x)``, so it is a
  ``ValueError`` naming the layer (call ``model.eval()``).
- **Layers that mix time steps** (``nn.RNN``/``LSTM``/``GRU``, or any module with the class
  attribute ``streamable = False``) are a ``ValueError`` naming the layer at construction.
  Arithmetic over the time axis written inside a custom ``forward`` cannot be seen from outside.
- Gradients flow through the carried state; call :meth:`Streaming.detach` to cut them
  (truncated BPTT) or run under ``torch.no_grad()``.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Readout
from .models import Delay
from .neurons import SpikingNeuron

__all__ = ["Streaming"]

_STATEFUL = (SpikingNeuron, Delay)
_TIME_MIXING = (nn.RNNBase,)


def _detach(state):
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(_detach(s) for s in state)
    return state


class Streaming(nn.Module):
    """Wrap a time-first ``model`` (``[T, B, ...] -> [T, B, ...]``) for one step per call;
    see the module docstring.

    Example::

        net = create_model("mlp", in_shape=(64,), num_classes=10).eval()
        stream = Streaming(net)
        for x_t in x:                 # x [T, B, 64]
            logits_t = stream(x_t)    # [B, 10], the same as net(x)[t]
        stream.reset()
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"Streaming wraps an nn.Module, got {type(model).__name__}")
        for name, m in model.named_modules():
            if isinstance(m, _TIME_MIXING) or getattr(type(m), "streamable", True) is False:
                raise ValueError(f"Streaming cannot run layer {name or 'model'!r} "
                                 f"({type(m).__name__}) one step at a time: it mixes time "
                                 "steps")
        self.model = model
        self._stateful = [(n, m) for n, m in model.named_modules() if isinstance(m, _STATEFUL)]
        self._readouts = [(n, m) for n, m in model.named_modules() if isinstance(m, Readout)]
        self._norms = [(n, m) for n, m in model.named_modules()
                       if isinstance(m, nn.modules.batchnorm._NormBase)]
        self.state: dict[str, object] = {}
        self.steps = 0
        self._sums: dict[str, torch.Tensor] = {}

    def reset(self) -> None:
        """Forget the carried states: the next call starts from the initial states."""
        self.state = {}
        self._sums = {}
        self.steps = 0

    def detach(self) -> None:
        """Cut the autograd graph behind the carried states (truncated BPTT)."""
        self.state = {k: _detach(v) for k, v in self.state.items()}
        self._sums = {k: v.detach() for k, v in self._sums.items()}

    def _check_modes(self) -> None:
        for name, m in self._norms:
            if m.training or m.running_mean is None:
                raise ValueError(f"Streaming: layer {name!r} ({type(m).__name__}) uses batch "
                                 "statistics (training mode or no running stats) over the T*B "
                                 "samples of a whole sequence, one step has only B; call "
                                 "model.eval() before streaming, with running statistics")

    def _stateful_forward(self, name: str, module: nn.Module):
        def forward(x):
            y, self.state[name] = module.run(x, self.state.get(name))
            return y
        return forward

    def _readout_forward(self, name: str, module: Readout, reduced: list):
        def forward(outputs):
            if module.mode == "per_step":
                return outputs
            reduced.append(name)
            if module.mode == "last":
                return outputs[-1]
            total = outputs[-1] + self._sums[name] if name in self._sums else outputs[-1]
            self._sums[name] = total
            return total / (self.steps + 1)
        return forward

    def forward(self, x_t: torch.Tensor):
        """One step: ``x_t [B, ...]`` -> the model's output at this step."""
        if not isinstance(x_t, torch.Tensor) or x_t.dim() < 1:
            raise ValueError("Streaming expects one time step [B, ...], got "
                             + (f"shape {tuple(x_t.shape)}" if isinstance(x_t, torch.Tensor)
                                else type(x_t).__name__))
        self._check_modes()
        reduced: list[str] = []
        patched = [m for _, m in self._stateful + self._readouts]
        for name, m in self._stateful:
            m.forward = self._stateful_forward(name, m)
        for name, m in self._readouts:
            m.forward = self._readout_forward(name, m, reduced)
        try:
            y = self.model(x_t.unsqueeze(0))
        finally:
            for m in patched:
                del m.forward
        self.steps += 1
        if reduced or not isinstance(y, torch.Tensor):
            return y
        return y[0]

    def extra_repr(self) -> str:
        return f"stateful_layers={len(self._stateful)}, steps={self.steps}"
