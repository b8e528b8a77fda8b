"""Homeostasis: DWAM, inference-time BCM weight adaptation with a CV-gated gain, keeping a
trained SNN's firing rates near their healthy set points under degradation.

See docs/homeostasis.md and :mod:`membra.homeostasis.rule` for the equations.
"""

from __future__ import annotations

from . import rule
from .dwam import DWAM, DWAMConfig
from .recorder import RateRecorder, find_synaptic_layers

__all__ = ["DWAM", "DWAMConfig", "RateRecorder", "find_synaptic_layers", "rule"]
