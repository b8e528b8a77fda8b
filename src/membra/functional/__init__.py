"""Pure functions of membra: neuron steps, surrogate spikes, encoders, readouts.

No state, no modules; everything else in membra is built on these definitions.
"""

from .encoding import ENCODERS, direct, encode, latency, rate
from .kinds import DEFAULT_INIT_RANGE, ZOO_KINDS, InitPotential, NeuronKind
from .models import alif_step, check_delays, cuba_lif_step, delay_sequence, rlif_step
from .neuron import (
    RESETS,
    check_tau,
    fire_and_reset,
    if_charge,
    if_step,
    lif_charge,
    lif_step,
    raw_from_tau,
    tau_from_raw,
)
from .readout import READOUTS, readout
from .surrogate import (
    PRECOMPUTED,
    SURROGATES,
    Surrogate,
    as_surrogate,
    get_surrogate,
    heaviside,
    spike,
    surrogate_grad,
)

__all__ = [
    "ENCODERS", "direct", "encode", "latency", "rate",
    "RESETS", "check_tau", "fire_and_reset", "if_charge", "if_step", "lif_charge", "lif_step",
    "raw_from_tau", "tau_from_raw",
    "READOUTS", "readout",
    "cuba_lif_step", "alif_step", "rlif_step", "check_delays", "delay_sequence",
    "DEFAULT_INIT_RANGE", "InitPotential", "NeuronKind", "ZOO_KINDS",
    "PRECOMPUTED", "SURROGATES", "Surrogate", "as_surrogate", "get_surrogate", "heaviside",
    "spike", "surrogate_grad",
]
