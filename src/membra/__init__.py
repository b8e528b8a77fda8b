"""membra: spiking neural networks built around the membrane potential.

Quick tour::

    import torch, membra
    lif = membra.nn.LIF(shape=(128,), init_potential="learnable")   # learnable IMP
    x = torch.rand(4, 8, 128)                                        # [T, B, 128]
    spikes = lif(x)                                                  # [T, B, 128]
    y = torch.randint(0, 2, (8,))
    logits = membra.readout(spikes, "last")                          # "mean" | "last" | "per_step"
    loss = membra.losses.ls_tet(spikes, y, eps=0.01)
    acc_t = membra.metrics.per_step_accuracy(spikes, y)
    run = membra.load_run("runs/digits_imp_lts")                     # model, config, meta

Every name is imported on first use, so ``import membra`` (and the ``membra`` command's
``--help``) costs no torch import until a name that needs torch is touched.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "functional", "kernels", "nn", "losses", "metrics", "readout",
           "load_run", "Run"]

#: public name -> (module that defines it, attribute of that module or ``None`` for the module)
_LAZY = {
    "functional": ("membra.functional", None),
    "kernels": ("membra.kernels", None),
    "nn": ("membra.nn", None),
    "losses": ("membra.losses", None),
    "metrics": ("membra.metrics", None),
    "readout": ("membra.functional.readout", "readout"),
    "load_run": ("membra.train.runs", "load_run"),
    "Run": ("membra.train.runs", "Run"),
}


def __getattr__(name: str):
    """PEP 562: import ``membra.<name>`` when it is first asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module 'membra' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)


def __dir__():
    return sorted(set(globals()) | set(__all__))
