"""Module wrappers: spiking neurons, time folding of stateless layers, readouts."""

from .layers import Readout, TimeDistributed, param_groups
from .neurons import IF, LIF, NeuronTrace, SpikingNeuron, neuron_class, record, recording

__all__ = ["IF", "LIF", "NeuronTrace", "SpikingNeuron", "neuron_class", "record", "recording",
           "Readout",
           "TimeDistributed", "param_groups"]
