"""Module wrappers: spiking neurons, time folding of stateless layers, readouts."""

from .layers import Readout, TimeDistributed, param_groups
from .models import ALIF, RLIF, CubaLIF, Delay
from .neurons import IF, LIF, SpikingNeuron
from .streaming import Streaming

__all__ = ["IF", "LIF", "SpikingNeuron", "Readout", "TimeDistributed", "param_groups"]
__all__ += ["CubaLIF", "ALIF", "RLIF", "Delay", "Streaming"]
