"""membra: spiking neural networks built around the membrane potential.

Quick tour::

    import membra
    lif = membra.nn.LIF(shape=(128,), init_potential="learnable")   # learnable IMP
    spikes = lif(x)                                                  # x [T, B, 128]
    logits = membra.readout(outputs, "last")                         # "mean" | "last" | "per_step"
    loss = membra.losses.ls_tet(outputs, y, eps=0.01)
    acc_t = membra.metrics.per_step_accuracy(outputs, y)
    run = membra.load_run("runs/digits_imp_lts")                     # model, config, meta
"""

__version__ = "0.1.0"

from . import functional, kernels, losses, metrics, nn  # noqa: E402
from .functional.readout import readout  # noqa: E402

__all__ = ["__version__", "functional", "kernels", "nn", "losses", "metrics", "readout",
           "load_run", "Run"]

#: names imported on first use, so that ``import membra`` does not import the training engine
_LAZY = {"load_run": "membra.train.runs", "Run": "membra.train.runs"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'membra' has no attribute {name!r}")
