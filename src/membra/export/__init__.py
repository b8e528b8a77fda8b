"""Export membra models: NIR, both ways (``pip install 'membra[export]'``; docs/nir.md), and
``torch.export`` programs (:func:`export_program`)."""

from .modules import GraphNet, InputMap
from .nir import from_nir, nir_neuron_params, read_nir, to_nir, write_nir
from .program import export_program

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir", "nir_neuron_params", "GraphNet",
           "InputMap", "export_program"]
