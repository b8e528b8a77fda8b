r"""NIR (Neuromorphic Intermediate Representation) both ways, for graphs (docs/nir.md).

:func:`to_nir` traces the network with ``torch.fx`` (nirtorch 2.6's tracer does not serve:
no shapes for Conv2d/Flatten nodes, no ``torch.cat``, a KeyError for unmapped modules) and
writes one node per layer: ``Affine``/``Linear``/``Conv2d`` (BatchNorm folded), ``AvgPool2d``
(also for whole-window ``AdaptiveAvgPool2d``), ``Flatten``, ``LIF``/``IF``/``CubaLIF``/``Delay``.
A residual ``+`` becomes two edges into the next node (NIR sums a node's inputs); ``torch.cat``
becomes one 0/1 selection ``Linear`` (vectors) or 1x1 ``Conv2d`` (channels) per part, summed
by the next node; a ``MaxPool2d`` on spikes becomes ``SumPool2d`` + an ``IF`` with threshold
1/2 that resets to 0 (exact: it fires iff the window holds a spike; NIR has no max-pool node).
:func:`from_nir` builds an ``nn.Sequential`` from a chain and a
:class:`~membra.export.modules.GraphNet` from any other acyclic graph.

**Neuron mapping.** NIR neurons are continuous-time; membra's are their forward-Euler
discretisation with a step ``dt`` (``dt = 1`` by default; stored as graph metadata
``membra.dt``). NIR's LIF is :math:`\tau\,\dot v = (v_{leak} - v) + R I`; one Euler step is
:math:`v \leftarrow v + \frac{dt}{\tau}(v_{leak} - v + R I)`. membra's decay-input LIF charge
is :math:`h = v + (x - (v - v_{reset}))/\tau_m`. They are equal for every input when

.. math:: \tau_{NIR} = \tau_m\, dt, \qquad R = 1, \qquad v_{leak} = v_{reset}.

NIR's IF is :math:`\dot v = R I`; :math:`h = v + x` gives :math:`R = 1/dt`. ``v_threshold``
and ``v_reset`` are copied.

**What NIR cannot express** (kept as node metadata, a documented membra extension with keys
prefixed ``membra.``; other NIR tools ignore them):

- the initial potential :math:`V_0` (IMP, learnable or constant): NIR has no initial-state
  field. ``membra.init_potential`` holds the per-neuron array (shape of the layer) and
  ``membra.init_potential_learnable`` whether it is trained. A NIR consumer that ignores it
  starts from 0, i.e. runs the network *without* its IMP;
- the soft (subtractive) reset: NIR's neurons reset to ``v_reset``. ``membra.reset`` says
  ``"soft"`` or ``"hard"``; without it the loader assumes NIR's hard reset;
- the firing comparison: NIR fires on :math:`v > v_{th}`, membra on :math:`v \ge v_{th}`
  (``membra.fire = ">="``); they differ only when the potential lands exactly on the threshold;
- training-only settings: surrogate, its alpha, ``detach_reset`` (``membra.surrogate``,
  ``membra.alpha``, ``membra.detach_reset``). A custom surrogate (a callable) cannot be
  written: :func:`to_nir` refuses it with a ``ValueError`` naming the layer and the surrogate
  (swap in a built-in first; the spikes do not depend on it).

:func:`from_nir` reads these keys when present, so a membra -> NIR -> membra round trip gives
the same spikes; on graphs from other tools it uses NIR's semantics (hard reset, zero start).

The pieces: :mod:`.nir_write` (:func:`to_nir`, :func:`write_nir`), :mod:`.nir_read`
(:func:`from_nir`, :func:`read_nir`) and :mod:`.nir_nodes` (what both share, and
:func:`nir_neuron_params`). This module is the public path to them.
"""

from __future__ import annotations

from .nir_nodes import nir_neuron_params
from .nir_read import from_nir, read_nir
from .nir_write import to_nir, write_nir

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir", "nir_neuron_params"]
