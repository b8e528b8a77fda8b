"""SOP counts against hand counts on tiny nets."""

import pytest
import torch
from torch import nn

import membra
from membra.energy import E_AC, E_MAC, sops
from membra.nn import IF, LIF, TimeDistributed


def test_reexported_from_metrics():
    assert membra.metrics.sops is sops
    assert (E_MAC, E_AC) == (4.6e-12, 0.9e-12)


def test_mlp_hand_count():
    # Linear(3, 4) with weights that make neuron j fire at known steps, then Linear(4, 2).
    lin1 = nn.Linear(3, 4, bias=False)
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 0.5, 0], [0, 0, 0.2], [0, 0, 0]]))
    net = nn.Sequential(lin1, IF(shape=(4,), reset="soft"), nn.Linear(4, 2))
    T, B = 4, 2
    x = torch.ones(T, B, 3)
    x[:, 1] = 0.0                       # sample 2 is silent
    rep = sops(net, x, first_layer_macs=True)     # all-ones "image" counted as analog
    # spikes of sample 1: neuron 0 every step (4), neuron 1 at t=2,4 (2), neuron 2 at t=5.. (0)
    spikes_sample1 = 4 + 2 + 0 + 0
    assert [r.input for r in rep.layers] == ["analog, static (once)", "spikes"]
    assert rep.layers[0].macs == 3 * 4                   # static image: one dense pass
    assert rep.layers[0].sops == 0
    assert sops(net, x, first_layer_macs=True, static_input_once=False).layers[0].macs == \
        T * 3 * 4
    events = sops(net, x).layers[0]               # by default integer input = event counts
    assert events.input == "spikes" and events.macs == 0
    assert events.sops == T * 3 * 4 / B           # sample 1: 3 events per step, fan-out 4
    assert rep.layers[1].spikes == spikes_sample1 / B
    assert rep.layers[1].sops == spikes_sample1 * 2 / B   # fan-out 2
    assert rep.ann_macs == 3 * 4 + 4 * 2
    assert rep.energy_j == pytest.approx(E_MAC * 12 + E_AC * 6)
    assert rep.ann_energy_j == pytest.approx(E_MAC * 20)
    assert "ANN, same size" in rep.to_markdown()


def test_conv_counts_borders_and_stride():
    torch.manual_seed(0)
    conv2 = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    net = nn.Sequential(TimeDistributed(nn.Conv2d(1, 2, 3, padding=1)),
                        LIF(shape=(2, 5, 5), tau=1.5, v_th=0.3),
                        TimeDistributed(conv2))
    x = torch.rand(3, 2, 1, 5, 5)
    seen = {}
    net[1].register_forward_hook(lambda m, a, out: seen.setdefault("s", out))
    rep = sops(net, x)
    s = seen["s"]                                   # [T, B, 2, 5, 5]
    assert s.sum() > 0
    # hand count: each output position of conv2 (3 x 3 map, 3 channels) reaches the input
    # pixels of its 3x3 window inside the map; add up the spikes found there
    ref = 0.0
    for i in range(3):
        for j in range(3):
            rows = [r for r in range(2 * i - 1, 2 * i + 2) if 0 <= r < 5]
            cols = [c for c in range(2 * j - 1, 2 * j + 2) if 0 <= c < 5]
            ref += 3 * s[..., rows, :][..., cols].sum().item()
    assert rep.layers[1].sops == pytest.approx(ref / 2)
    assert rep.layers[0].macs == 3 * (2 * 5 * 5) * 9      # T x outputs x fan-in
    assert rep.ann_macs == 2 * 25 * 9 + 3 * 9 * 18


@pytest.mark.parametrize("T,B", [(4, 2), (4, 4), (3, 3), (1, 5)])
def test_ann_macs_per_sample_any_t_and_b(T, B):
    # raw Linear on [T, B, N] and TimeDistributed on [T*B, N]: same per-sample counts, also
    # when T == B (the batch is not mistaken for a stem computed once)
    torch.manual_seed(0)
    for wrap in (lambda m: m, TimeDistributed):
        net = nn.Sequential(wrap(nn.Linear(3, 4)), IF(shape=(4,)), wrap(nn.Linear(4, 2)))
        rep = sops(net, torch.rand(T, B, 3), static_input_once=False)
        assert rep.ann_macs == 3 * 4 + 4 * 2
        assert rep.layers[0].macs == T * 3 * 4


def test_stem_once_counted_once():
    # a stem run once on [B, ...] and repeated over T: one pass, also when T == B
    class Stem(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 2, 3, padding=1)
            self.head = TimeDistributed(nn.Conv2d(2, 2, 1))

        def forward(self, x):
            s = self.stem(x[0])
            return self.head(s.unsqueeze(0).expand(x.shape[0], *s.shape))

    for T, B in ((4, 4), (3, 2)):
        rep = sops(Stem(), torch.rand(T, B, 1, 4, 4) + 0.01, static_input_once=False)
        assert rep.layers[0].ann_macs == 2 * 16 * 9 and rep.layers[0].macs == 2 * 16 * 9
        assert rep.ann_macs == 2 * 16 * 9 + 2 * 16 * 2


def test_integer_counts_are_spikes_fractions_are_macs():
    net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.Linear(3, 1, bias=False),
                        nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[1].weight.fill_(0.25)
    x = torch.ones(2, 1, 2)                          # layer 2 gets 2.0 (counts); layer 3 1.5
    rep = sops(net, x, first_layer_macs=True, static_input_once=False)
    assert [r.input for r in rep.layers] == ["analog", "spikes", "analog"]
    assert rep.layers[1].sops == 2 * 3 * 2 * 1      # T x (3 inputs of value 2) x fan-out 1
    assert rep.layers[2].macs == 2


def test_bad_input():
    with pytest.raises(ValueError, match="time-first"):
        sops(nn.Linear(2, 2), torch.ones(2))
    with pytest.raises(ValueError, match="no Linear/Conv"):
        sops(nn.ReLU(), torch.ones(2, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        sops(lambda z: z, torch.ones(2, 2))
