"""Per-layer firing-rate recording through forward hooks.

A *synaptic layer* is a pair ``(linear, spiking_module)``: the ``nn.Linear`` whose input are the
presynaptic spikes and the module whose output are the postsynaptic spikes. A model may declare
its pairs with a ``synaptic_layers()`` method returning ``(name, linear, spiking_module)``
triples; otherwise every ``nn.Linear`` is paired with the next membra spiking neuron
(:class:`~membra.nn.LIF`/:class:`~membra.nn.IF`) in module order.

Rates are spike counts averaged over every leading dimension (time, batch), so one control step
of ``T`` simulation steps gives ``c = (1/T) sum_t s(t)`` per neuron, averaged over the batch,
whether the model runs the whole sequence at once or one step per call.
"""

from __future__ import annotations

import torch
from torch import nn

from ..nn.neurons import SpikingNeuron

__all__ = ["find_synaptic_layers", "RateRecorder", "copy_without_rate_hooks"]


def find_synaptic_layers(model: nn.Module, layers=None) -> list[tuple[str, nn.Linear, nn.Module]]:
    """The ``(name, linear, spiking_module)`` triples of ``model`` (module docstring).

    ``layers`` optionally selects by name (a list of names from the full list)."""
    if hasattr(model, "synaptic_layers"):
        pairs = list(model.synaptic_layers())
    else:
        pairs, pending = [], None
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Linear):
                pending = (name, mod)
            elif isinstance(mod, SpikingNeuron) and pending is not None:
                pairs.append((pending[0], pending[1], mod))
                pending = None
    if not pairs:
        raise ValueError(f"{type(model).__name__} has no synaptic layers (nn.Linear followed by a "
                         "membra spiking neuron, or a synaptic_layers() method)")
    if layers is not None:
        names = [p[0] for p in pairs]
        unknown = [n for n in layers if n not in names]
        if unknown:
            raise ValueError(f"layers {unknown} not found; synaptic layers are {names}")
        pairs = [p for p in pairs if p[0] in layers]
    return pairs


class _Acc:
    __slots__ = ("sum", "n")

    def __init__(self):
        self.sum, self.n = None, 0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach()
        flat = x.reshape(-1, x.shape[-1])
        s = flat.sum(0)
        self.sum = s if self.sum is None else self.sum + s
        self.n += flat.shape[0]

    def pop(self):
        if self.sum is None or self.n == 0:
            return None
        r = self.sum / self.n
        self.sum, self.n = None, 0
        return r


class MembraHook:
    """Base of the forward hooks membra's recorders and DWAM attach (stripped from copies by
    :func:`copy_without_rate_hooks`)."""

    __slots__ = ()


class _RateHook(MembraHook):
    """Forward hook adding a tensor (the input or the output) to an accumulator."""

    __slots__ = ("acc", "use_input")

    def __init__(self, acc: _Acc, use_input: bool):
        self.acc, self.use_input = acc, use_input

    def __call__(self, module, inp, out):
        self.acc.add(inp[0] if self.use_input else out)


def copy_without_rate_hooks(model: nn.Module) -> nn.Module:
    """``copy.deepcopy(model)`` minus the hooks of any :class:`RateRecorder` or DWAM attached
    to ``model`` (:class:`MembraHook`): without this the copy's forwards would be counted, and
    stepped, by the original's adapter. Other hooks are kept."""
    import copy

    new = copy.deepcopy(model)
    for mod in new.modules():
        for hid in [k for k, h in mod._forward_hooks.items() if isinstance(h, MembraHook)]:
            del mod._forward_hooks[hid]
    return new


class RateRecorder:
    """Hooks recording pre/post rates per synaptic layer between calls of :meth:`pop`.

    ``pop()`` returns ``{name: (c_post, c_pre)}`` for the layers that ran since the last call
    (and clears). With ``history=True`` every popped post rate is also appended to
    :attr:`history` ``{name: [rates]}``.
    """

    def __init__(self, model: nn.Module, layers=None, history: bool = False):
        self.pairs = find_synaptic_layers(model, layers)
        self.history = {name: [] for name, _, _ in self.pairs} if history else None
        self._acc = {name: (_Acc(), _Acc()) for name, _, _ in self.pairs}
        self._handles = []
        for name, lin, post in self.pairs:
            post_acc, pre_acc = self._acc[name]
            self._handles.append(lin.register_forward_hook(_RateHook(pre_acc, True)))
            self._handles.append(post.register_forward_hook(_RateHook(post_acc, False)))

    def pop(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for name, (post, pre) in self._acc.items():
            c, c_pre = post.pop(), pre.pop()
            if c is not None and c_pre is not None:
                out[name] = (c, c_pre)
                if self.history is not None:
                    self.history[name].append(c)
        return out

    def clear(self) -> None:
        self.pop()
        if self.history is not None:
            for v in self.history.values():
                v.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
