"""The typed vocabulary of neurons: kinds and initial potentials, validated once.

Every place in membra that names a neuron kind goes through :class:`NeuronKind` (the kernels get
its integer :attr:`NeuronKind.code`), and every layer's initial potential is an
:class:`InitPotential` checked at construction.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["NeuronKind", "ZOO_KINDS", "InitPotential", "DEFAULT_INIT_RANGE"]

#: ``U(low, high)`` of a learnable initial potential when no ``init_range`` is given
DEFAULT_INIT_RANGE = (0.4, 0.6)


class NeuronKind(enum.Enum):
    """A neuron model of membra, by name: ``"lif"``, ``"if"``, ``"cuba_lif"``, ``"alif"``,
    ``"rlif"``. The one table of kinds: the layers (:func:`membra.nn.neuron_class`), the
    model zoo's switch (``model.neuron``, :data:`ZOO_KINDS`) and the kernels (:attr:`code`)
    all read it."""

    LIF = "lif"
    IF = "if"
    CUBA_LIF = "cuba_lif"
    ALIF = "alif"
    RLIF = "rlif"

    @property
    def code(self) -> int:
        """The integer the C++ and Triton kernels receive (0 LIF, 1 IF, 2 CubaLIF, 3 ALIF;
        RLIF runs the LIF kernel one step at a time and has none of its own)."""
        code = _KIND_CODES[self]
        if code is None:
            raise ValueError(f"neuron kind {self.value!r} has no kernel code of its own")
        return code

    @property
    def has_tau(self) -> bool:
        """Whether the kind has a membrane time constant ``tau`` (all but IF)."""
        return self is not NeuronKind.IF

    @property
    def recurrent(self) -> bool:
        """Whether a layer of this kind holds an ``[N, N]`` recurrent weight
        (``N = prod(shape)``): RLIF. The zoo builds such a layer only where the neurons are
        1-D (:func:`membra.models.common.make_neuron`)."""
        return self is NeuronKind.RLIF

    @property
    def in_zoo(self) -> bool:
        """Whether the model zoo's ``model.neuron`` switch offers it (every kind; a
        :attr:`recurrent` kind only in nets whose neuron layers are 1-D)."""
        return self in ZOO_KINDS

    @classmethod
    def parse(cls, value) -> NeuronKind:
        """The kind named ``value`` (a :class:`NeuronKind` or its name); anything else raises
        ``ValueError`` listing the valid names."""
        if isinstance(value, cls):
            return value
        for kind in cls:
            if isinstance(value, str) and value == kind.value:
                return kind
        raise ValueError(f"neuron={value!r} is not known; choose one of "
                         f"{[k.value for k in cls]}")


_KIND_CODES = {NeuronKind.LIF: 0, NeuronKind.IF: 1, NeuronKind.CUBA_LIF: 2, NeuronKind.ALIF: 3,
               NeuronKind.RLIF: None}

#: the kinds of the model zoo's switch ``model.neuron``, in the order configs list them
ZOO_KINDS = (NeuronKind.LIF, NeuronKind.IF, NeuronKind.CUBA_LIF, NeuronKind.ALIF, NeuronKind.RLIF)


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _check_range(init_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in init_range)
    except (TypeError, ValueError):
        raise ValueError(f"init_range must be two numbers (low, high), got {init_range!r}"
                         ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"init_range must be finite, got {init_range!r}")
    if not lo <= hi:
        raise ValueError(f"init_range must have low <= high, got {init_range!r}")
    return lo, hi


@dataclass(frozen=True, eq=False)
class InitPotential:
    r"""The initial membrane potential :math:`V_0` of a layer, one of

    - ``constant``: a finite float (``value``), the same for every neuron;
    - ``tensor``: a fixed tensor broadcastable to ``(1, *shape)`` (``value``);
    - ``learnable``: a parameter of shape ``(1, *shape)`` (the IMP), initialised from
      ``value`` when given, else :math:`U(\text{range})`.

    Built with :meth:`parse`, which checks everything once.
    """

    kind: str
    value: float | torch.Tensor | None = None
    range: tuple[float, float] | None = None

    @classmethod
    def parse(cls, value=0.0, *, init_range=None, learnable: bool = False,
              shape: tuple[int, ...] | None = None) -> InitPotential:
        """Validate ``init_potential`` / ``init_range`` / ``learnable_potential`` of a layer of
        per-sample ``shape``. ``init_range`` is only meaningful for ``"learnable"``."""
        if isinstance(value, str):
            if value != "learnable":
                raise ValueError(f"init_potential={value!r} is not known; use a number, a "
                                 "tensor or 'learnable'")
            if shape is None:
                raise ValueError("init_potential='learnable' needs shape= of one sample "
                                 "(e.g. LIF(shape=(128,), init_potential='learnable'))")
            rng = _check_range(DEFAULT_INIT_RANGE if init_range is None else init_range)
            return cls("learnable", None, rng)
        if init_range is not None:
            _check_range(init_range)
            raise ValueError(f"init_range={init_range!r} applies only to "
                             "init_potential='learnable' (drawn U(low, high)); this potential "
                             f"is given: {value!r}")
        if isinstance(value, torch.Tensor):
            if not value.is_floating_point():
                raise TypeError(f"init_potential tensor must be floating point, got "
                                f"{value.dtype}")
            if not bool(torch.isfinite(value).all()):
                raise ValueError("init_potential tensor must be finite")
            if shape is not None:
                target = (1, *shape)
                try:
                    ok = torch.broadcast_shapes(value.shape, target) == target
                except RuntimeError:
                    ok = False
                if not ok:
                    raise ValueError(f"init_potential of shape {tuple(value.shape)} does not "
                                     f"broadcast to (1, *shape) = {target}")
        elif not _finite_number(value):
            raise TypeError(f"init_potential must be a finite number, a tensor or 'learnable', "
                            f"got {value!r}")
        if learnable:
            if shape is None:
                raise ValueError("learnable_potential=True needs shape= of one sample")
            return cls("learnable", value, None)
        if isinstance(value, torch.Tensor):
            return cls("tensor", value)
        return cls("constant", float(value))

    def initial_tensor(self, shape: tuple[int, ...] | None = None, *,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """A fresh float32 tensor holding :math:`V_0`: 0-d for a constant, the tensor for a
        fixed tensor, ``(1, *shape)`` for a learnable one."""
        if self.kind == "constant":
            return torch.tensor(float(self.value))
        if self.kind == "tensor":
            return self.value.detach().clone().float()
        if isinstance(self.value, torch.Tensor):
            return self.value.detach().clone().float()
        if shape is None:
            raise ValueError("a learnable init_potential needs the per-sample shape")
        if self.value is not None:
            return torch.full((1, *shape), float(self.value))
        return torch.empty(1, *shape).uniform_(*self.range, generator=generator)


def as_shape(shape) -> tuple[int, ...] | None:
    """``shape`` of one sample as a tuple of positive ints (an int is a 1-d shape)."""
    if shape is None:
        return None
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, Sequence) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(f"shape must be a tuple of positive ints (one sample), got {shape!r}")
    return tuple(shape)
