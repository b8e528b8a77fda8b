"""The BDETT-style dynamic-threshold neuron of the PopSAN actor, against a plain loop."""

import numpy as np
import pytest
import torch

from membra.control import PopSANActor, load_actor, save_actor
from membra.control.actor import DynamicThreshold, SpikingLayer


def _reference(cur, tau, v_th, a, v_ref, b, C, theta_min):
    """Plain numpy loop over time, batch and neuron of the documented equations."""
    T, B, n = cur.shape
    out = np.zeros_like(cur)
    for bi in range(B):
        u = np.zeros(n)
        for t in range(T):
            v = (1 - 1 / tau) * u + cur[t, bi]
            vbar = v.mean()
            for i in range(n):
                th = max(v_th + a * (vbar - v_ref) - b * np.tanh((v[i] - u[i]) / C), theta_min)
                out[t, bi, i] = 1.0 if v[i] - th >= 0 else 0.0
            u = v * (1 - out[t, bi])
    return out


@pytest.mark.parametrize("T,B,n,seed", [(1, 1, 3, 0), (5, 2, 7, 1), (9, 3, 13, 2),
                                        (5, 4, 1, 3)])
@pytest.mark.parametrize("a,b", [(0.5, 0.1), (1.3, 0.0), (0.0, 0.4), (2.0, 1.0)])
def test_dynamic_threshold_matches_plain_loop(T, B, n, seed, a, b):
    g = torch.Generator().manual_seed(seed)
    cur = (torch.rand(T, B, n, generator=g, dtype=torch.float64) * 1.6 - 0.3)
    layer = DynamicThreshold(n, a=a, b=b, C=0.5)
    got = layer(cur).numpy()
    ref = _reference(cur.numpy(), 4.0, 0.5, a, 0.0, b, 0.5, 0.05)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("seed", range(4))
def test_zero_gains_is_popsan_lif_exactly(seed):
    torch.manual_seed(seed)
    n_in, n_out = 5 + seed, 3 + 2 * seed
    lif, dyn = SpikingLayer(n_in, n_out), SpikingLayer(n_in, n_out, neuron="bdett")
    dyn.linear.load_state_dict(lif.linear.state_dict())
    dyn.neuron.a = dyn.neuron.b = 0.0
    x = (torch.rand(6, 2, n_in) < 0.5).float() * 2
    assert torch.equal(lif(x), dyn(x))


def test_threshold_rises_with_layer_mean_and_falls_with_depolarisation():
    layer = DynamicThreshold(6, a=0.5, b=0.2, C=0.5)
    g = torch.Generator().manual_seed(0)
    v, u = torch.rand(3, 6, generator=g), torch.rand(3, 6, generator=g)
    base = layer.threshold(v, u)
    for c in (0.1, 0.4, 1.0):  # shifting v and u together leaves D unchanged
        torch.testing.assert_close(layer.threshold(v + c, u + c), base + 0.5 * c)
    faster = layer.threshold(v, u - 0.3)  # same v, larger depolarisation D = v - u
    assert (faster <= base).all() and (faster < base).any()


def test_gradient_reaches_the_synapses():
    torch.manual_seed(0)
    actor = PopSANActor(3, 1, hidden=(16, 16), neuron="bdett")
    actor(torch.randn(8, 3)).sum().backward()
    assert all(layer.linear.weight.grad is not None and layer.linear.weight.grad.abs().sum() > 0
               for layer in actor.layers)


def test_neuron_option_round_trips_and_is_validated(tmp_path):
    torch.manual_seed(1)
    actor = PopSANActor(3, 1, hidden=(8, 8), neuron="bdett")
    save_actor(tmp_path / "c", actor, {"env_id": "Pendulum-v1"})
    back, cfg = load_actor(tmp_path / "c")
    assert cfg["actor"]["neuron"] == "bdett"
    assert all(isinstance(layer.neuron, DynamicThreshold) for layer in back.layers)
    x = torch.randn(4, 3)
    assert torch.equal(actor.eval()(x), back(x))
    assert "neuron" not in PopSANActor(3, 1, hidden=(8,)).config  # old checkpoints = lif
    with pytest.raises(ValueError, match="bdett"):
        PopSANActor(3, 1, neuron="adaptive")
    with pytest.raises(ValueError, match="C must"):
        DynamicThreshold(4, C=0.0)
