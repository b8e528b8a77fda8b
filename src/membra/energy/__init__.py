r"""Synaptic operations (SOPs) and the 45 nm energy estimate of a spiking network.

For every weight layer (``nn.Linear``, ``nn.Conv1d/2d/3d``, also inside
:class:`membra.nn.TimeDistributed`) a forward hook looks at the tensor actually fed into it and
asks where it came from (its provenance, traced through every torch operation of the forward):

- **events**: the spikes of a :class:`membra.nn.SpikingNeuron` (or of a module with
  ``emits_spikes = True``, e.g. a converted SNN's layers, whose output ``w * s`` carries the
  binary spikes ``s`` of ``last_spikes``), the model input when it holds
  non-negative integers (event-camera frames; ``first_layer_macs=True`` makes it analog), and
  anything computed from events by weight-free operations: copies (reshape, flatten, slicing,
  padding, concatenation, nearest upsampling, dropout, ``z[idx] = s``), sums (average and
  adaptive average pooling, ``sum``, ``mean``, the ADD of two event maps), max pooling,
  multiplication by a constant, and integer-valued elementwise logic of spike maps (AND,
  ``1 - s``). Each event costs one accumulate per (path through those operations, synapse)
  it reaches:

  .. math:: \mathrm{SOP}_l = \sum_{\text{outputs } o} \big(|W_l| \to 1\big)\big(e\big)_o,
     \qquad e = P^{\mathbf 1}(s),

  where :math:`P^{\mathbf 1}` is the weight-free chain with every nonzero coefficient replaced
  by 1 (an average pool becomes a sum pool) and the layer is applied with all-ones weights and
  no bias, exact at borders, strides and groups. A pool whose windows do not overlap gives
  every spike one path, so this is the synapse count of the layer with the pool folded in;
- **analog values** (the first layer's image, currents, BatchNorm outputs, anything multiplied
  by a learned tensor, or a mix of events and analog values): dense multiply-accumulates,
  :math:`\mathrm{MAC}_l = N_{out} \cdot \mathrm{fan\_in}` per call. When the analog input is the
  same at every time step (a directly encoded image) the layer's current is the same too, so
  it is computed once and reused: it costs one dense pass (the ANN's MACs of that layer), not T
  (``static_input_once=True``, the convention of the conversion spec). A time-varying analog
  input costs T passes.

The equally-sized ANN runs every weight layer once per sample, densely:
:math:`\mathrm{MAC}^{ANN} = \sum_l N_{out,l} \cdot \mathrm{fan\_in}_l` (one time step).
Energy uses the 45 nm convention common in the SNN literature:
:math:`E_{SNN} = E_{MAC} \cdot \mathrm{MAC} + E_{AC} \cdot \mathrm{SOP}` with
:math:`E_{MAC} = 4.6` pJ, :math:`E_{AC} = 0.9` pJ; :math:`E_{ANN} = E_{MAC} \cdot
\mathrm{MAC}^{ANN}`. All counts are per sample (averaged over the batch). See docs/energy.md.

The pieces: :mod:`.count` (:func:`sops`, :func:`ones_op`), :mod:`.events` (the provenance of
events through torch operations), :mod:`.results` (:class:`SOPReport`, :class:`LayerOps` and
the energies per operation).
"""

from .count import WEIGHT_LAYERS, ones_op, sops
from .results import E_AC, E_MAC, LayerOps, SOPReport, energy_j

__all__ = ["E_MAC", "E_AC", "energy_j", "WEIGHT_LAYERS", "LayerOps", "SOPReport", "sops", "ones_op"]
