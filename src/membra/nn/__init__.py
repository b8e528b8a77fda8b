"""Module wrappers: spiking neurons, time folding of stateless layers, readouts."""

from .layers import Readout, TimeDistributed, param_groups
from .models import ALIF, RLIF, CubaLIF, Delay, neuron_class
from .neurons import IF, LIF, NeuronTrace, SpikingNeuron, record, recording
from .streaming import Streaming

__all__ = ["IF", "LIF", "NeuronTrace", "SpikingNeuron", "neuron_class", "record", "recording",
           "Readout", "TimeDistributed", "param_groups"]
__all__ += ["CubaLIF", "ALIF", "RLIF", "Delay", "Streaming"]
