"""Model registry: names -> builders of spiking networks ``[T, B, *in_shape] -> [T, B, K]``.

Example::

    from membra.models import create_model, list_models
    net = create_model("mlp", in_shape=(64,), num_classes=10,
                       neuron_kwargs={"init_potential": "learnable"})
    logits = net(x)                     # x [T, B, 64] -> per-step logits [T, B, 10]
    pred = membra.readout(logits, "mean")
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..functional.kinds import NeuronKind
from .common import NEURON_CLASSES, NeuronShapeError

__all__ = ["ModelEntry", "register_model", "list_models", "model_entries", "create_model",
           "NEURONS"]

NEURONS = tuple(NEURON_CLASSES)
_COMMON = ("in_shape", "num_classes", "neuron", "neuron_kwargs")


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: builder and one-line description."""

    name: str
    builder: Callable
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, description: str = ""):
    """Decorator registering ``builder(*, in_shape, num_classes, neuron, neuron_kwargs, **kw)
    -> nn.Module`` under ``name``. Registering a name twice is a ``ValueError``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def deco(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        doc = description or (builder.__doc__ or "").strip().split("\n")[0]
        _REGISTRY[name] = ModelEntry(name, builder, doc)
        return builder

    return deco


def _ensure_builtins() -> None:
    from . import cnn, mlp, sew_resnet, vgg  # noqa: F401


def list_models() -> list[str]:
    """Sorted names of all registered models."""
    _ensure_builtins()
    return sorted(_REGISTRY)


def model_entries() -> list[ModelEntry]:
    """Registered models with their descriptions, sorted by name."""
    _ensure_builtins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def _check_in_shape(in_shape) -> tuple[int, ...]:
    if isinstance(in_shape, int) and not isinstance(in_shape, bool):
        in_shape = (in_shape,)
    try:
        shape = tuple(in_shape)
    except TypeError:
        shape = None
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                            for d in shape):
        raise ValueError(f"in_shape must be a non-empty tuple of positive ints (one sample, "
                         f"one step), got {in_shape!r}")
    return shape


def create_model(name: str, *, in_shape, num_classes: int, neuron: str = "lif",
                 neuron_kwargs: dict | None = None, **kw) -> nn.Module:
    """Build the model ``name`` for per-step inputs of shape ``in_shape``.

    Args:
        name: a name from :func:`list_models`.
        in_shape: shape of one sample at one step, e.g. ``(64,)`` or ``(2, 48, 48)``.
        num_classes: ``K``, the size of the per-step logits.
        neuron: a key of :data:`membra.models.common.NEURON_CLASSES` (the kinds of
            :data:`membra.functional.ZOO_KINDS`: ``lif``, ``if``, ``cuba_lif``, ``alif``,
            ``rlif``; ``docs/neurons.md``) or that :class:`membra.functional.NeuronKind`.
            ``rlif`` (an ``n x n`` recurrent weight per layer) only in nets whose neuron
            layers are 1-D, such as ``mlp``; elsewhere a ``ValueError`` naming the net.
        neuron_kwargs: keyword arguments for every neuron (``init_potential``, ``tau``,
            ``reset``, ``surrogate`` ...); the builder passes ``shape=`` itself.
        **kw: options of the model (see ``membra models`` and ``docs/models.md``).

    Returns:
        an ``nn.Module`` mapping ``x [T, B, *in_shape]`` to logits ``[T, B, num_classes]``;
        apply the readout with :func:`membra.readout` (or ``model.predict``).
    """
    _ensure_builtins()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ValueError(f"model {name!r} is not known{hint} Known models: {sorted(_REGISTRY)}")
    shape = _check_in_shape(in_shape)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if isinstance(neuron, NeuronKind):
        neuron = neuron.value
    if neuron not in NEURONS:
        raise ValueError(f"neuron={neuron!r} is not known; choose one of {list(NEURONS)}")
    neuron_kwargs = dict(neuron_kwargs or {})
    if "shape" in neuron_kwargs:
        raise ValueError("neuron_kwargs must not contain 'shape': the builder sets each "
                         "neuron's shape itself")
    builder = _REGISTRY[name].builder
    known = [p for p in inspect.signature(builder).parameters if p not in _COMMON]
    unknown = sorted(set(kw) - set(known))
    if unknown:
        raise ValueError(f"model {name!r} has no option(s) {unknown}; its options are {known}")
    try:
        return builder(in_shape=shape, num_classes=num_classes, neuron=neuron,
                       neuron_kwargs=neuron_kwargs, **kw)
    except NeuronShapeError as e:
        raise ValueError(f"model {name!r}: {e}") from None
