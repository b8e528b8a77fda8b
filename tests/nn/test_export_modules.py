"""``torch.export`` of a whole network of membra neuron modules: the exported program reads
the modules' threshold / time-constant buffers in its graph (they are not baked in) and gives
the eager model's outputs, for every neuron model, learnable initial potentials and time
constants included."""

from __future__ import annotations

import pytest
import torch

from membra.models import create_model
from membra.nn import ALIF, IF, LIF, RLIF, CubaLIF, Delay

NEURONS = ["lif", "if", "cuba_lif", "alif"]


def _zoo(name, neuron, **neuron_kwargs):
    if name == "mlp":
        return create_model("mlp", in_shape=(12,), num_classes=5, neuron=neuron,
                            neuron_kwargs=neuron_kwargs), (5, 3, 12)
    return create_model("cnn", in_shape=(1, 8, 8), num_classes=5, neuron=neuron,
                        channels=(4, 8), hidden=16, neuron_kwargs=neuron_kwargs), (3, 2, 1, 8, 8)


def _layers():
    g = torch.Generator().manual_seed(3)
    return {
        "lif-learnable-imp-tau": LIF(shape=(10,), tau=3.0, v_th=0.9, init_potential="learnable",
                                     learnable_tau=True),
        "if-hard-reset": IF(shape=(10,), v_th=0.7, v_reset=-0.1, reset="hard"),
        "cuba_lif": CubaLIF(shape=(10,), tau_syn=4.0, init_potential="learnable"),
        "alif": ALIF(shape=(10,), tau_adapt=5.0, beta=0.3, init_potential="learnable"),
        "rlif": RLIF(shape=(10,), init_potential="learnable"),
        "delay+lif": torch.nn.Sequential(
            Delay((10,), max_delay=3, delays=torch.randint(0, 4, (10,), generator=g)),
            LIF(shape=(10,))),
    }


def _check_export(model, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    model.eval()
    x = torch.rand(shape, generator=g) * 2
    ep = torch.export.export(model, (x,))
    y = torch.rand(shape, generator=g) * 2  # another input than the one traced
    got, want = ep.module()(y), model(y)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    return ep


@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_zoo_model_exports_and_matches_eager(name, neuron):
    model, shape = _zoo(name, neuron, init_potential="learnable")
    _check_export(model, shape)


@pytest.mark.parametrize("key", list(_layers()))
def test_every_neuron_module_exports_and_matches_eager(key):
    layer = _layers()[key]
    with torch.no_grad():  # a state that is not the default one
        for p in layer.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    out = _check_export(layer, (6, 4, 10), seed=list(_layers()).index(key))
    assert out.module()(torch.zeros(6, 4, 10)).shape == (6, 4, 10)


@pytest.mark.parametrize("neuron", NEURONS)
def test_exported_program_reads_the_threshold_buffer(neuron):
    # a threshold changed after export changes the exported program's output as it changes the
    # model's: the value is read in the graph, not baked in
    model, shape = _zoo("mlp", neuron)
    ep = _check_export(model, shape)
    module = ep.module()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(5)) * 2
    before = module(x)
    for m in (model, module):
        for name, buf in m.named_buffers():
            if name.endswith("v_th"):
                buf.fill_(0.25)
    torch.testing.assert_close(module(x), model(x), atol=1e-6, rtol=1e-5)
    assert not torch.equal(module(x), before)


def test_eager_thresholds_must_still_be_numbers():
    # a tensor threshold is taken only from a module while torch.export traces
    from membra.kernels import lif_sequence

    with pytest.raises(ValueError, match="v_th must be a finite number"):
        lif_sequence(torch.rand(3, 2, 4), v_th=torch.tensor(1.0))
