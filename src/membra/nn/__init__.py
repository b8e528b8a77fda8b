"""Module wrappers: spiking neurons, time folding of stateless layers, readouts."""

from .layers import Readout, TimeDistributed, param_groups
from .neurons import IF, LIF, SpikingNeuron

__all__ = ["IF", "LIF", "SpikingNeuron", "Readout", "TimeDistributed", "param_groups"]
