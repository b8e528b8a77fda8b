"""The model zoo: spiking networks by name.

``create_model(name, in_shape=..., num_classes=..., neuron="lif"|"if", neuron_kwargs=...)``
returns a module mapping ``[T, B, *in_shape]`` to per-step logits ``[T, B, K]``. Every neuron
is built with its ``shape=`` (a documented dry run at build time), so
``neuron_kwargs={"init_potential": "learnable"}`` gives parameters that exist before the first
forward. See ``docs/models.md``.

``pretrained(name)`` returns a trained classifier shipped with membra (``membra models
--pretrained`` lists them with their test accuracy).
"""

from .common import SpikingNet, Stack, make_neuron
from .registry import ModelEntry, create_model, list_models, model_entries, register_model
from .shipped import PretrainedEntry, pretrained, pretrained_entries, pretrained_entry

__all__ = ["register_model", "list_models", "model_entries", "create_model", "ModelEntry",
           "SpikingNet", "Stack", "make_neuron", "pretrained", "pretrained_entry",
           "pretrained_entries", "PretrainedEntry"]
