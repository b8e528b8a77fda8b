"""Pure functions of membra: neuron steps, surrogate spikes, encoders, readouts.

No state, no modules; everything else in membra is built on these definitions.
"""

from .encoding import ENCODERS, direct, encode, latency, rate
from .neuron import RESETS, fire_and_reset, if_charge, if_step, lif_charge, lif_step
from .readout import READOUTS, readout
from .surrogate import SURROGATES, Surrogate, get_surrogate, heaviside, spike, surrogate_grad

__all__ = [
    "ENCODERS", "direct", "encode", "latency", "rate",
    "RESETS", "fire_and_reset", "if_charge", "if_step", "lif_charge", "lif_step",
    "READOUTS", "readout",
    "SURROGATES", "Surrogate", "get_surrogate", "heaviside", "spike", "surrogate_grad",
]
