"""The zoo switch ``model.neuron``: every neuron model is a valid config value, its own
options are checked by building one, and each builds in every zoo recipe."""

from __future__ import annotations

import pytest
import torch

from membra.models import create_model
from membra.models.common import NEURON_CLASSES
from membra.nn import ALIF, CubaLIF
from membra.train.config import parse_config


@pytest.mark.parametrize("neuron,opt,cls", [("cuba_lif", "tau_syn=4.0", CubaLIF),
                                             ("alif", "beta=0.5", ALIF)])
def test_new_neurons_in_configs(neuron, opt, cls):
    cfg = parse_config("", [f"model.neuron='{neuron}'", f"model.neuron_kwargs.{opt}",
                            "model.neuron_kwargs.init_potential='learnable'"])
    assert cfg.model.neuron == neuron
    net = create_model("mlp", in_shape=(8,), num_classes=3, neuron=cfg.model.neuron,
                       neuron_kwargs=dict(cfg.model.neuron_kwargs))
    layers = [m for m in net.modules() if isinstance(m, cls)]
    assert layers and all(m.learnable_potential for m in layers)
    assert net(torch.rand(3, 2, 8)).shape == (3, 2, 3)


@pytest.mark.parametrize("overrides,match", [
    (["model.neuron='lfi'"], "model.neuron"),
    (["model.neuron='lif'", "model.neuron_kwargs.tau_syn=4.0"], "model.neuron_kwargs.tau_syn"),
    (["model.neuron='cuba_lif'", "model.neuron_kwargs.tau_syn=0.5"],
     "model.neuron_kwargs.tau_syn"),
    (["model.neuron='alif'", "model.neuron_kwargs.tau_adapt=0.5"],
     "model.neuron_kwargs.tau_adapt"),
    (["model.neuron='alif'", "model.neuron_kwargs.init_adaptation='x'"],
     "model.neuron_kwargs.init_adaptation"),
])
def test_bad_neuron_options_name_the_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        parse_config("", overrides)


def test_switch_lists_every_model():
    assert set(NEURON_CLASSES) == {"lif", "if", "cuba_lif", "alif", "rlif"}
