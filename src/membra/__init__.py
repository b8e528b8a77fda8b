"""membra: spiking neural networks built around the membrane potential.

Quick tour::

    import membra
    lif = membra.nn.LIF(shape=(128,), init_potential="learnable")   # learnable IMP
    spikes = lif(x)                                                  # x [T, B, 128]
    logits = membra.readout(outputs, "last")                         # "mean" | "last" | "per_step"
    loss = membra.losses.ls_tet(outputs, y, eps=0.01)
    acc_t = membra.metrics.per_step_accuracy(outputs, y)
"""

__version__ = "0.1.0"

from . import functional, kernels, losses, metrics, nn  # noqa: E402
from .functional.readout import readout  # noqa: E402

__all__ = ["__version__", "functional", "kernels", "nn", "losses", "metrics", "readout"]
