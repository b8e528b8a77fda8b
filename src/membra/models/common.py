"""Building blocks of the zoo: neurons with known shapes, the shape dry run, the model shell.

**Shape dry run.** Every neuron gets ``shape=`` (one sample, one step) at construction, so a
learnable initial potential exists before the first forward (optimizers, DDP and checkpoints
see it). Builders track the per-sample shape layer by layer: after each stateless layer they
run it once on a zero tensor ``[1, 1, *S]`` (eval mode, no grad, so BatchNorm statistics are
untouched) and read the output shape. A layer that cannot take the shape is reported as a
``ValueError`` naming the layer and the shape.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..functional.kinds import ZOO_KINDS, NeuronKind
from ..functional.readout import check_readout, readout
from ..nn import TimeDistributed, neuron_class

__all__ = ["NEURON_CLASSES", "NeuronShapeError", "check_neuron_shape", "make_neuron",
           "out_shape", "Stack", "SpikingNet"]

#: The zoo's neuron switch (``model.neuron`` in configs): name -> layer class, read from the
#: one table of kinds (:data:`membra.functional.ZOO_KINDS`, :func:`membra.nn.neuron_class`).
NEURON_CLASSES: dict[str, type[nn.Module]] = {k.value: neuron_class(k) for k in ZOO_KINDS}


class NeuronShapeError(ValueError):
    """A neuron kind that the zoo cannot build at a layer's shape (:func:`make_neuron`);
    :func:`membra.models.create_model` adds the net's name to the message."""


def check_neuron_shape(neuron: str, shape: tuple[int, ...]) -> None:
    """A :attr:`~membra.functional.NeuronKind.recurrent` kind (RLIF) needs a 1-D ``shape``:
    its recurrent weight is ``n x n`` with ``n = prod(shape)``, all-to-all over a feature map
    (``NeuronShapeError`` otherwise, raised before anything is allocated)."""
    if not NeuronKind.parse(neuron).recurrent or len(shape) == 1:
        return
    n = math.prod(shape)
    raise NeuronShapeError(
        f"neuron={neuron!r} needs 1-D neuron layers, and this net has a neuron layer of "
        f"per-sample shape {tuple(shape)}: an RLIF layer has an n x n recurrent weight "
        f"(n = prod(shape) = {n}: a {n} x {n} weight, {4 * n * n / 2**20:,.0f} MiB in float32) "
        "connecting every position of the feature map to every other. Use a net whose neuron "
        "layers are 1-D (the 'mlp'), or RLIF in your own model")


def make_neuron(neuron: str, shape: tuple[int, ...], neuron_kwargs: dict) -> nn.Module:
    """``NEURON_CLASSES[neuron](shape=shape, **neuron_kwargs)``, e.g. ``LIF(...)``; a
    recurrent kind only on a 1-D ``shape`` (:func:`check_neuron_shape`)."""
    check_neuron_shape(neuron, shape)
    cls = NEURON_CLASSES[neuron]
    try:
        return cls(shape=tuple(shape), **neuron_kwargs)
    except TypeError as e:
        raise ValueError(f"neuron_kwargs {sorted(neuron_kwargs)} do not fit "
                         f"{cls.__name__}: {e}") from None


@torch.no_grad()
def out_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Per-sample output shape of a time-first ``module`` on per-sample input ``shape``
    (one forward of zeros ``[1, 1, *shape]`` in eval mode)."""
    was_training = module.training
    module.eval()
    try:
        y = module(torch.zeros(1, 1, *shape))
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"layer {_describe(module)} cannot take per-sample shape "
                         f"{tuple(shape)}: {e}") from None
    finally:
        module.train(was_training)
    return tuple(y.shape[2:])


def _describe(module: nn.Module) -> str:
    inner = module.module if isinstance(module, TimeDistributed) else module
    return repr(inner).replace("\n", " ")


class Stack:
    """A sequential network under construction that knows its current per-sample shape.

    ``add(layer)`` appends a stateless layer (wrapped in :class:`membra.nn.TimeDistributed`
    unless ``time_distributed=False``), ``spike()`` appends a neuron of the current shape,
    ``build()`` returns the ``nn.Sequential``.
    """

    def __init__(self, in_shape: tuple[int, ...], neuron: str, neuron_kwargs: dict):
        self.shape = tuple(in_shape)
        self.neuron = neuron
        self.neuron_kwargs = neuron_kwargs
        self.layers: list[nn.Module] = []

    def add(self, layer: nn.Module, time_distributed: bool = True) -> Stack:
        m = TimeDistributed(layer) if time_distributed else layer
        self.shape = out_shape(m, self.shape)
        self.layers.append(m)
        return self

    def spike(self) -> Stack:
        self.layers.append(make_neuron(self.neuron, self.shape, self.neuron_kwargs))
        return self

    def build(self) -> nn.Sequential:
        return nn.Sequential(*self.layers)


class SpikingNet(nn.Module):
    """The zoo's model shell: checks the input ``[T, B, *in_shape]`` and runs ``body``.

    Attributes: ``name``, ``in_shape``, ``num_classes``, ``readout`` (default readout mode
    used by :meth:`predict`; ``forward`` always returns per-step logits ``[T, B, K]``).
    """

    def __init__(self, name: str, body: nn.Module, in_shape: tuple[int, ...],
                 num_classes: int, readout: str = "mean"):
        super().__init__()
        check_readout(readout)
        self.name = name
        self.body = body
        self.in_shape = tuple(in_shape)
        self.num_classes = num_classes
        self.readout = readout

    def _first_layer(self) -> str:
        for mod_name, mod in self.body.named_modules():
            if mod_name and not list(mod.children()):
                return f"'body.{mod_name}' {_describe(mod)}"
        return "'body'"

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name} expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 + len(self.in_shape) or tuple(x.shape[2:]) != self.in_shape:
            raise ValueError(
                f"{self.name}: input layer {self._first_layer()} expects x [T, B, "
                f"*{self.in_shape}] (in_shape={self.in_shape}), got x of shape "
                f"{tuple(x.shape)} (per-sample shape {tuple(x.shape[2:])})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step logits ``[T, B, K]`` of ``x [T, B, *in_shape]``."""
        self.check_input(x)
        return self.body(x)

    def predict(self, x: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """Readout of the per-step logits (``mode`` or the model's ``readout``)."""
        return readout(self(x), mode or self.readout)

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, in_shape={self.in_shape}, num_classes={self.num_classes},"
                f" readout={self.readout!r}")
