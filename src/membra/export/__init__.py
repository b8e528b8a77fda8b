"""Export membra models: NIR (``pip install 'membra[export]'``)."""

from .nir import from_nir, nir_neuron_params, read_nir, to_nir, write_nir

__all__ = ["to_nir", "from_nir", "write_nir", "read_nir", "nir_neuron_params"]
