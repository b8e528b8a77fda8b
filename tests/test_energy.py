"""SOP counts against hand counts, plain loops and exact enumeration on tiny nets."""

import copy
import math
import random
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import membra
from membra.energy import E_AC, E_MAC, WEIGHT_LAYERS, sops
from membra.models import create_model
from membra.models.sew_resnet import CONNECT, SEWBlock
from membra.nn import IF, LIF, SpikingNeuron, TimeDistributed
from membra.train.config import load_config
from membra.train.engine import build_model


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


def test_bad_input():
    with pytest.raises(ValueError, match="time-first"):
        sops(nn.Linear(2, 2), torch.ones(2))
    with pytest.raises(ValueError, match="no Linear/Conv"):
        sops(nn.ReLU(), torch.ones(2, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        sops(lambda z: z, torch.ones(2, 2))


# ---- spikes through weight-free ops: counted by provenance, not by integrality -------------
# A weight layer W fed by P(s), P a chain of weight-free linear ops of spikes s, accumulates:
#   SOP = sum over spikes of the (path through P, synapse of W) pairs it reaches
#       = 1^T S_W S_Pk ... S_P1 s,   S = the 0/1 support of each map (|W| -> 1).
F64 = torch.float64


def _relay(shape):
    """LIF (tau=2, V0=0, soft reset) firing exactly where its input is 2 (h = x/2)."""
    return LIF(shape=tuple(shape), tau=2.0)


def _bernoulli(seed, shape, p=0.35):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


def _support(module, shape):
    """``(S, out_shape)``: the 0/1 matrix [out, in] of the per-sample linear map ``module``
    (weights replaced by ones, no bias) at per-sample input ``shape``, from its Jacobian."""
    m = copy.deepcopy(module).to(F64).eval()
    if isinstance(m, WEIGHT_LAYERS):
        with torch.no_grad():
            m.weight.fill_(1.0)
        m.bias = None

    def f(z):
        return m(z.unsqueeze(0))[0]

    z = torch.zeros(shape, dtype=F64)
    out = tuple(f(z).shape)
    J = torch.autograd.functional.jacobian(f, z)
    return (J.reshape(math.prod(out), math.prod(shape)) != 0).to(F64), out


def _paths(chain, weight, e):
    """Reference ``(SOPs, events)`` per sample of ``weight`` fed by ``chain`` applied to the
    event map ``e [T, B, *S]``: ``1^T S_W S_P e`` and ``1^T S_P e``, summed, over B."""
    shape = tuple(e.shape[2:])
    M = torch.eye(math.prod(shape), dtype=F64)
    for m in chain:
        S, shape = _support(m, shape)
        M = S @ M
    S_W, _ = _support(weight, shape)
    flat = e.flatten(2).to(F64)
    B = e.shape[1]
    return float((flat @ (S_W @ M).sum(0)).sum()) / B, float((flat @ M.sum(0)).sum()) / B


def _run_relay_chain(s, chain, weight):
    """``sops`` of relay(2 s) -> chain -> weight (each step wrapped in TimeDistributed);
    checks the relay spikes are exactly ``s``. Returns the weight layer's row."""
    net = nn.Sequential(_relay(s.shape[2:]), *[TimeDistributed(m) for m in chain],
                        TimeDistributed(weight)).eval()
    seen = {}
    net[0].register_forward_hook(lambda m, a, out: seen.setdefault("s", out))
    rep = sops(net, 2 * s)
    assert torch.equal(seen["s"], s), "test relay must reproduce the spikes"
    assert len(rep.layers) == 1
    return rep.layers[0]


def _check_row(row, chain, weight, s):
    ref_sops, ref_events = _paths(chain, weight, s)
    assert row.input == "spikes", f"{chain} -> {weight}: counted as {row.input}"
    assert row.macs == 0
    assert row.sops == pytest.approx(ref_sops, rel=1e-6, abs=1e-9)
    assert row.spikes == pytest.approx(ref_events, rel=1e-6, abs=1e-9)
    assert row.energy_j == pytest.approx(E_AC * ref_sops)


_AVG = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_ADAPTIVE = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _out_shape(chain, shape):
    z = torch.zeros(1, *shape)
    for m in chain:
        z = m.eval()(z)
    return tuple(z.shape[1:])


def _random_conv(rng, d, shape):
    """Conv{d}d on per-sample ``shape`` with random width, kernel, stride, padding,
    dilation and groups (always a valid output size)."""
    c_in = shape[0]
    groups = rng.choice([g for g in range(1, c_in + 1) if c_in % g == 0])
    k, dil, pad, stride = rng.randint(1, 3), rng.randint(1, 2), rng.randint(0, 1), \
        rng.randint(1, 2)
    if any((k - 1) * dil + 1 > n + 2 * pad for n in shape[1:]):
        k, dil = 1, 1
    return _CONV[d](c_in, groups * rng.randint(1, 3), k, stride=stride, padding=pad,
                    dilation=dil, groups=groups)


def _random_avgpool(rng, d, shape):
    k = rng.choice([2, 3, 5])
    ks = tuple(min(k, n) for n in shape[1:])       # a side of 1 is pooled with width 1
    kw = dict(stride=rng.randint(1, min(ks)), padding=rng.randint(0, min(ks) // 2),
              ceil_mode=rng.random() < 0.5, count_include_pad=rng.random() < 0.5)
    return _AVG[d](ks, **kw)


@pytest.mark.parametrize("seed", range(24))
def test_lif_avgpool_conv_counts_every_spike_path(seed):
    # LIF -> AvgPool{1,2,3}d (kernels 2, 3, 5; overlapping strides, padding, ceil mode) ->
    # Conv{1,2,3}d with random groups: accumulates, equal to the support-matrix reference
    rng = random.Random(seed)
    d = 1 + seed % 3
    shape = (rng.randint(1, 3), *[rng.randint(4, 9 if d < 3 else 6) for _ in range(d)])
    s = _bernoulli(seed, (rng.randint(1, 3), rng.randint(1, 3), *shape))
    pool = _random_avgpool(rng, d, shape)
    conv = _random_conv(rng, d, _out_shape([pool], shape))
    _check_row(_run_relay_chain(s, [pool], conv), [pool], conv, s)


@pytest.mark.parametrize("seed", range(18))
def test_lif_adaptive_avgpool_linear_counts_every_spike_path(seed):
    # output sizes that do not divide the input (overlapping bins) or exceed it
    rng = random.Random(seed)
    d = 1 + seed % 3
    shape = (rng.randint(1, 3), *[rng.randint(2, 9 if d < 3 else 5) for _ in range(d)])
    out = tuple(rng.randint(1, n + 1) for n in shape[1:])
    out = (out[0] if out[0] != shape[1] else shape[1] + 1, *out[1:])   # never the identity
    s = _bernoulli(seed, (rng.randint(1, 3), rng.randint(1, 3), *shape))
    chain = [_ADAPTIVE[d](out if d > 1 else out[0]), nn.Flatten(1)]
    lin = nn.Linear(math.prod(_out_shape(chain, shape)), rng.randint(1, 7))
    _check_row(_run_relay_chain(s, chain, lin), chain, lin, s)


def _shift_into_zeros(x):
    z = torch.zeros_like(x)
    z[:, :, 1:] = x[:, :, :-1]
    return z


def _write_analog(x):
    z = x.clone()
    z[..., 0] = 0.5
    return z


class _Op(nn.Module):
    """A module running ``fn``."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class _CatFlip(nn.Module):
    """Concatenate the map with its mirror image along channels (a weight-free copy)."""

    def forward(self, x):
        return torch.cat([x, x.flip(-1)], dim=1)


class _Half(nn.Module):
    """Multiply by a constant (folds into the next layer's weights)."""

    def forward(self, x):
        return x * 0.5


class _Swap(nn.Module):
    """Split the channels in two chunks and swap them (a weight-free copy)."""

    def forward(self, x):
        return torch.cat(x.chunk(2, dim=1)[::-1], dim=1)


class _Reduce(nn.Module):
    """Sum or mean over the last axis, kept (weight-free sums)."""

    def __init__(self, how):
        super().__init__()
        self.how = how

    def forward(self, x):
        return getattr(x, self.how)(dim=-1, keepdim=True)


def _random_op(rng, shape):
    kind = rng.choice(["pad", "reflect", "upsample", "dropout", "avg", "adaptive", "cat",
                       "half", "identity", "swap", "sum", "mean"])
    if kind in ("sum", "mean"):
        return _Reduce(kind)
    if kind == "swap":
        return _Swap()
    if kind == "pad":
        return nn.ZeroPad2d(tuple(rng.randint(0, 2) for _ in range(4)))
    if kind == "reflect":
        return nn.ReflectionPad2d(min(1, *[n - 1 for n in shape[1:]]))
    if kind == "upsample":
        return nn.Upsample(scale_factor=rng.choice([2, 3]), mode=rng.choice(
            ["nearest", "nearest-exact"]))
    if kind == "dropout":
        return nn.Dropout(0.5)
    if kind == "avg":
        return _random_avgpool(rng, 2, shape)
    if kind == "adaptive":
        return nn.AdaptiveAvgPool2d(tuple(rng.randint(1, n + 1) for n in shape[1:]))
    return {"cat": _CatFlip, "half": _Half, "identity": nn.Identity}[kind]()


@pytest.mark.parametrize("seed", range(24))
def test_chains_of_weight_free_ops_count_every_spike_path(seed):
    # padding, reflection, nearest upsampling, dropout (eval), pooling, concatenation and
    # constant scaling between LIF and Conv2d / Flatten-Linear, 1 to 3 ops in a row
    rng = random.Random(1000 + seed)
    shape = (rng.randint(1, 3), rng.randint(3, 7), rng.randint(3, 7))
    chain, averaging = [], rng.randint(0, 2)     # one op makes values fractional
    for i in range(rng.randint(max(1, averaging + 1), 3)):
        mid = _out_shape(chain, shape)
        chain.append(_random_op(rng, mid) if i != averaging else rng.choice(
            [_random_avgpool(rng, 2, mid), nn.AdaptiveAvgPool2d((1, mid[2])), _Half()]))
    mid = _out_shape(chain, shape)
    if rng.random() < 0.5:
        chain.append(nn.Flatten(1))
        weight = nn.Linear(math.prod(mid), rng.randint(1, 5))
    else:
        weight = _random_conv(rng, 2, mid)
    s = _bernoulli(seed, (2, 2, *shape))
    _check_row(_run_relay_chain(s, chain, weight), chain, weight, s)


def _windows(e, d, k, stride):
    """``[..., *out, k^d]`` windows of the last ``d`` axes."""
    for _ in range(d):          # each unfold moves the next spatial axis to position -d
        e = e.unfold(-d, k, stride)
    return e.flatten(-d)


@pytest.mark.parametrize("avg_first", [False, True])
@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("seed", range(2))
def test_max_pooling_passes_the_selected_events(seed, d, adaptive, avg_first):
    # LIF -> [AvgPool 2] -> (Adaptive)MaxPool -> Conv: max pooling selects one input per
    # window; after an average of width 2 the selected value has the largest sum, so the
    # reference is the max of the window sums (windows by unfold)
    rng = random.Random(200 + seed)
    k = rng.choice([2, 3])
    shape = (rng.randint(1, 3), *[2 * k * rng.randint(1, 3) for _ in range(d)])
    s = _bernoulli(seed, (2, 2, *shape), 0.5)
    mid = tuple(n // 2 for n in shape[1:]) if avg_first else shape[1:]
    stride = k if adaptive else rng.randint(1, k)
    pool = ({1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d}[d](tuple(n // k for n in mid))
            if adaptive else {1: nn.MaxPool1d, 2: nn.MaxPool2d}[d](k, stride))
    chain = ([_AVG[d](2)] if avg_first else []) + [pool]
    conv = _random_conv(rng, d, _out_shape(chain, shape))
    e = _windows(s, d, 2, 2).sum(-1) if avg_first else s
    e = _windows(e, d, k, stride).amax(-1)
    row = _run_relay_chain(s, chain, conv)
    ref, _ = _paths([], conv, e)
    assert (row.input, row.macs) == ("spikes", 0)
    assert row.sops == pytest.approx(ref)


def test_dropout_in_training_keeps_the_kept_spikes():
    s = _bernoulli(7, (3, 4, 10), 0.6)
    drop = nn.Dropout(0.5)
    net = nn.Sequential(_relay((10,)), drop, nn.Linear(10, 3))       # drop in training mode
    seen = {}
    drop.register_forward_hook(lambda m, a, out: seen.setdefault("y", out))
    row = sops(net, 2 * s).layers[0]
    kept = s * (seen["y"] != 0)
    assert 0 < kept.sum() < s.sum()
    assert (row.input, row.spikes, row.sops) == ("spikes", kept.sum() / 4,
                                                 kept.sum() * 3 / 4)


_NOT_WEIGHT_FREE = {
    "bilinear": lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
    "pad_one": lambda x: F.pad(x, (1, 1, 1, 1), value=1.0),
    "plus_half": lambda x: x + 0.5,
    "learned_scale": lambda x: x * torch.linspace(1, 2, x.shape[-1]),
    "cat_analog": lambda x: torch.cat([x, torch.rand_like(x)], dim=1),
    "batchnorm": nn.BatchNorm2d(2).eval(),
    "setitem_analog": _write_analog,
}


@pytest.mark.parametrize("case", sorted(_NOT_WEIGHT_FREE))
def test_ops_with_weights_or_offsets_are_analog(case):
    # interpolation weights, constant offsets, learned scales, mixing with analog values
    # and BatchNorm make the next layer's input analog: dense MACs, time-varying -> T passes
    T, B = 2, 3
    fn = _NOT_WEIGHT_FREE[case]
    op = fn if isinstance(fn, nn.Module) else _Op(fn)
    mid = _out_shape([op], (2, 4, 4))
    conv = nn.Conv2d(mid[0], 3, 3)
    net = nn.Sequential(_relay((2, 4, 4)), TimeDistributed(op), TimeDistributed(conv)).eval()
    row = sops(net, 2 * _bernoulli(9, (T, B, 2, 4, 4), 0.5), static_input_once=False).layers[0]
    assert row.input == "analog" and row.sops == 0
    assert row.macs == T * row.ann_macs


# weight-free operations on a [N, 4, 6, 6] map (after a 2x2 average pool of 4 x 12 x 12 spikes)
_WEIGHT_FREE = {
    "reshape_view": lambda x: x.reshape(x.shape[0], 2, -1).view(x.shape[0], -1),
    "permute_transpose": lambda x: x.permute(0, 2, 3, 1).transpose(1, 2).contiguous(),
    "unsqueeze_expand_squeeze": lambda x: x.unsqueeze(1).expand(-1, 3, -1, -1, -1).flatten(1, 2),
    "repeat_tile_interleave": lambda x: torch.cat([x.repeat(1, 1, 1, 2), x.tile(2),
                                                   x.repeat_interleave(2, dim=-1)], dim=1),
    "flip_roll": lambda x: torch.roll(x.flip(-1), 2, dims=-2),
    "getitem_select_narrow": lambda x: torch.cat([x[:, 1:3, :, ::2], x.narrow(-1, 1, 3),
                                                  x.select(1, 0).unsqueeze(1)[..., :3]], 1),
    "index_tensor": lambda x: x[:, torch.tensor([3, 0, 0])],
    "split_stack_unbind": lambda x: torch.stack([*(t[:, 0] for t in x.split(1, dim=1)),
                                                 *x.unbind(1)[:1]], 1),
    "pixel_shuffle": lambda x: F.pixel_unshuffle(F.pixel_shuffle(x, 2), 3),
    "dtype_roundtrip": lambda x: x.double().to(torch.float32),
    "pads": lambda x: torch.cat([F.pad(x, (1, 1, 1, 1), mode=m) for m in
                                 ("reflect", "replicate", "circular", "constant")], 1),
    "nearest": lambda x: F.interpolate(x, scale_factor=(2, 3), mode="nearest"),
    "divide": lambda x: x / 4,
    "zeros_setitem": _shift_into_zeros,
    "sum_mean": lambda x: torch.cat([x.sum(1, keepdim=True), x.mean(-1, keepdim=True).expand(
        -1, -1, -1, 6)], 1),
}


@pytest.mark.parametrize("op", sorted(_WEIGHT_FREE))
def test_each_weight_free_op_keeps_events(op):
    s = _bernoulli(len(op), (2, 3, 4, 12, 12), 0.4)
    chain = [nn.AvgPool2d(2), _Op(_WEIGHT_FREE[op]), nn.Flatten(1)]
    lin = nn.Linear(math.prod(_out_shape(chain, (4, 12, 12))), 3)
    _check_row(_run_relay_chain(s, chain, lin), chain, lin, s)


def _loop_avgpool_conv(s, k, ps, pp, conv):
    """Plain loops: for each conv output and kernel tap that lands on a pool cell, add the
    spikes of that cell's window (AvgPool2d(k, ps, pp), ceil_mode=False)."""
    C, H, W = s.shape
    Hp, Wp = (H + 2 * pp - k) // ps + 1, (W + 2 * pp - k) // ps + 1
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (conv.kernel_size, conv.stride, conv.padding,
                                              conv.dilation)
    Ho = (Hp + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (Wp + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    cin_g, cout_g = conv.in_channels // conv.groups, conv.out_channels // conv.groups
    total = 0.0
    for co in range(conv.out_channels):
        for oi in range(Ho):
            for oj in range(Wo):
                for ci in range((co // cout_g) * cin_g, (co // cout_g + 1) * cin_g):
                    for a in range(kh):
                        for b in range(kw):
                            pi, pj = oi * sh - ph + a * dh, oj * sw - pw + b * dw
                            if not (0 <= pi < Hp and 0 <= pj < Wp):
                                continue
                            for r in range(pi * ps - pp, pi * ps - pp + k):
                                for c in range(pj * ps - pp, pj * ps - pp + k):
                                    if 0 <= r < H and 0 <= c < W:
                                        total += float(s[ci, r, c])
    return total


@pytest.mark.parametrize("seed", range(8))
def test_lif_avgpool_conv_against_plain_loop(seed):
    rng = random.Random(50 + seed)
    shape = (rng.randint(1, 2) * 2, rng.randint(4, 7), rng.randint(4, 7))
    k = rng.choice([2, 3])
    ps, pp = rng.randint(1, k), rng.randint(0, k // 2)
    pool = nn.AvgPool2d(k, ps, pp)
    conv = nn.Conv2d(shape[0], 2 * rng.randint(1, 2), rng.choice([1, 2, 3]),
                     stride=rng.randint(1, 2), padding=rng.randint(0, 1),
                     groups=rng.choice([1, 2]))
    if any(conv.kernel_size[0] > n + 2 * conv.padding[0] for n in _out_shape([pool], shape)[1:]):
        conv = nn.Conv2d(shape[0], 2, 1)
    T, B = 2, 2
    s = _bernoulli(seed, (T, B, *shape))
    ref = sum(_loop_avgpool_conv(s[t, b], k, ps, pp, conv) for t in range(T)
              for b in range(B)) / B
    row = _run_relay_chain(s, [pool], conv)
    assert row.input == "spikes" and row.macs == 0
    assert row.sops == pytest.approx(ref)


def test_hand_count_lif_avgpool_conv():
    # 1x4x4 spikes, AvgPool 2x2 -> 2x2 map, Conv 3x3 pad 1 with 3 channels: every pool cell
    # lies in all 4 output windows, so each spike costs 4 x 3 = 12 accumulates
    s = torch.zeros(2, 1, 1, 4, 4)
    s[0, 0, 0, 0, 0] = s[0, 0, 0, 1, 1] = s[0, 0, 0, 3, 2] = 1     # step 1: 3 spikes
    s[1, 0, 0, 2, 3] = s[1, 0, 0, 0, 3] = 1                         # step 2: 2 spikes
    conv = nn.Conv2d(1, 3, 3, padding=1)
    row = _run_relay_chain(s, [nn.AvgPool2d(2)], conv)
    assert (row.input, row.spikes, row.sops, row.macs) == ("spikes", 5, 5 * 12, 0)
    assert row.ann_macs == 3 * 4 * 9
    assert row.energy_j == pytest.approx(60 * E_AC)


def test_hand_count_lif_adaptive_avgpool_linear():
    # 5x5 -> AdaptiveAvgPool (2, 2): bins rows/cols [0, 3) and [2, 5) overlap on index 2.
    # spikes at (0,0): 1 bin, (0,2): 2 bins, (2,2): 4 bins, (4,4): 1 bin -> 8 events,
    # Linear(4, 3): 8 x 3 = 24 accumulates
    s = torch.zeros(1, 1, 1, 5, 5)
    for r, c in ((0, 0), (0, 2), (2, 2), (4, 4)):
        s[0, 0, 0, r, c] = 1
    row = _run_relay_chain(s, [nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(1)], nn.Linear(4, 3))
    assert (row.input, row.spikes, row.sops, row.macs) == ("spikes", 8, 24, 0)


class _AddHead(nn.Module):
    """Two relays whose spikes are added (a SEW ADD connection, counts in {0, 1, 2}) and fed
    through ``chain`` into ``weight``; the input holds 2 s1 and 2 s2 along channels."""

    def __init__(self, shape, chain, weight, inplace):
        super().__init__()
        self.c = shape[0]
        self.a, self.b = _relay(shape), _relay(shape)
        self.chain = nn.Sequential(*[TimeDistributed(m) for m in chain])
        self.weight = TimeDistributed(weight)
        self.inplace = inplace

    def forward(self, x):
        o, s = self.a(x[:, :, :self.c]), self.b(x[:, :, self.c:])
        if self.inplace:
            z = o.clone()
            z += s
        else:
            z = o + s
        return self.weight(self.chain(z))


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("head", ["conv", "avgpool_conv", "gap_linear"])
@pytest.mark.parametrize("seed", range(3))
def test_residual_add_counts(seed, head, inplace):
    rng = random.Random(seed)
    shape = (rng.randint(1, 3), rng.randint(4, 7), rng.randint(4, 7))
    s1, s2 = _bernoulli(seed, (3, 2, *shape), 0.5), _bernoulli(seed + 100, (3, 2, *shape), 0.5)
    z = s1 + s2
    assert z.max() == 2
    if head == "gap_linear":                 # the SEW-ResNet head
        chain, weight = [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)], nn.Linear(shape[0], 5)
    else:
        chain = [nn.AvgPool2d(rng.choice([2, 3]))] if head == "avgpool_conv" else []
        weight = _random_conv(rng, 2, _out_shape(chain, shape))
    net = _AddHead(shape, chain, weight, inplace).eval()
    rep = sops(net, torch.cat([2 * s1, 2 * s2], dim=2))
    _check_row(rep.layers[0], chain, weight, z)
    if head == "gap_linear":                 # hand count: every count reaches 5 outputs
        assert rep.layers[0].sops == pytest.approx(float(z.sum()) * 5 / 2)


# ---- the zoo and the shipped configs, against an independent walk --------------------------
def _sum_pool(e, m):
    """Reference event map after AvgPool2d(2) / AdaptiveAvgPool2d by explicit slicing."""
    if isinstance(m, nn.AvgPool2d):
        assert (m.kernel_size, m.stride, m.padding) in ((2, 2, 0), ((2, 2), (2, 2), (0, 0)))
        H, W = e.shape[-2] // 2 * 2, e.shape[-1] // 2 * 2
        e = e[..., :H, :W]
        return e.unflatten(-1, (W // 2, 2)).unflatten(-3, (H // 2, 2)).sum((-3, -1))
    oh, ow = (m.output_size, m.output_size) if isinstance(m.output_size, int) else m.output_size
    assert e.shape[-2] % oh == 0 and e.shape[-1] % ow == 0
    return e.unflatten(-1, (ow, -1)).unflatten(-3, (oh, -1)).sum((-3, -1))


def _ones_count(m, e):
    """SOPs of weight layer ``m`` fed by event map ``e`` per sample (|W| -> 1)."""
    if isinstance(m, nn.Linear):
        return float(e.sum()) * m.out_features / e.shape[1]
    w = torch.ones_like(m.weight)
    y = F.conv2d(e.flatten(0, 1), w, None, m.stride, m.padding, m.dilation, m.groups)
    return float(y.sum()) / e.shape[1]


def _walk(modules, h, e, expected):
    """Run ``modules`` one by one on ``h``; next to it keep the event map ``e`` (None when
    analog) and record what each weight layer must cost in ``expected[id(layer)]``."""
    for m in modules:
        inner = m.module if isinstance(m, TimeDistributed) else m
        if isinstance(inner, nn.Sequential) and isinstance(inner[0], WEIGHT_LAYERS):
            expected[id(inner[0])] = e                       # conv + BN
            h, e = m(h), None
            continue
        if isinstance(inner, SEWBlock):
            h, e = _walk_sew(inner, h, e, expected)
            continue
        out = m(h)
        if isinstance(inner, WEIGHT_LAYERS):
            expected[id(inner)], e = e, None
        elif isinstance(inner, SpikingNeuron):
            e = out
        elif isinstance(inner, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)) and e is not None:
            e = _sum_pool(e, inner)
        elif isinstance(inner, nn.Flatten) and e is not None:
            e = e.flatten(2)
        else:
            e = None
        h = out
    return h, e


def _walk_sew(blk, s, e, expected):
    o1, = _walk([blk.conv1, blk.sn1], s, e, expected)[:1]
    o, _ = _walk([blk.conv2, blk.sn2], o1, o1, expected)
    idn = s if blk.down is None else _walk([blk.down, blk.down_sn], s, e, expected)[0]
    out = CONNECT[blk.connect](o, idn)
    return out, out


def _check_model(model, x, events_in):
    """Every weight layer of ``model`` on ``x``: SOPs of the walked event map, else MACs."""
    model.eval()
    expected = {}
    with torch.no_grad():
        _walk(model.body, x, x if events_in else None, expected)
    rep = sops(model, x)
    names = {n: m for n, m in model.named_modules()}
    assert len(rep.layers) == len(expected)
    for row in rep.layers:
        layer = names[row.name]
        e = expected[id(layer)]
        if e is None:
            assert row.input.startswith("analog") and row.sops == 0, row.name
        else:
            assert (row.input, row.macs) == ("spikes", 0), row.name
            assert row.sops == pytest.approx(_ones_count(layer, e), rel=1e-6), row.name
            assert row.spikes == pytest.approx(float(e.sum()) / x.shape[1], rel=1e-6)
    assert rep.energy_j == pytest.approx(E_MAC * rep.total_macs + E_AC * rep.total_sops)
    return rep


def _events(seed, shape, high=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, shape, generator=g).float()


@pytest.mark.parametrize("events_in", [True, False])
@pytest.mark.parametrize("seed", range(2))
def test_zoo_vgg11_small(seed, events_in):
    torch.manual_seed(seed)
    model = create_model("vgg11", in_shape=(2, 12, 10), num_classes=5, neuron="lif",
                         neuron_kwargs={"v_th": 0.05}, widths=(3, 4, 5, 6), blocks=(1, 1, 2, 1))
    x = _events(seed, (3, 2, 2, 12, 10)) if events_in else torch.rand(3, 2, 2, 12, 10)
    rep = _check_model(model, x, events_in)
    assert [r.input for r in rep.layers[1:]] == ["spikes"] * 5     # pooled, GAP head too
    assert all(r.spikes > 0 for r in rep.layers[1:])                # every layer is active


@pytest.mark.parametrize("connect", ["add", "and", "iand"])
def test_zoo_sew_resnet_small(connect):
    torch.manual_seed(0)
    model = create_model("sew_resnet18", in_shape=(2, 12, 12), num_classes=4, neuron="if",
                         neuron_kwargs={"v_th": 0.05}, widths=(2, 3, 3, 4), connect=connect)
    rep = _check_model(model, _events(1, (2, 3, 2, 12, 12)), True)   # final map 2x2
    assert rep.total_macs == 0 and rep.layers[-1].input == "spikes"
    if connect != "and":                    # ANDs of sparse spikes fall silent in depth
        assert all(r.spikes > 0 for r in rep.layers)


def test_shipped_digits_dvs_config_counts():
    # the model of configs/digits_dvs_ls_tet.toml on digits-dvs shaped event frames
    # (counts 0..3, T=8): every layer is event-driven, counts exact, ANN MACs by hand
    cfg = load_config("configs/digits_dvs_ls_tet.toml")
    torch.manual_seed(0)
    model = build_model(cfg, SimpleNamespace(in_shape=(2, 16, 16), num_classes=10))
    x = _events(0, (cfg.data.T, 4, 2, 16, 16), high=4)
    rep = _check_model(model, x, True)
    assert rep.total_macs == 0
    assert rep.energy_j == pytest.approx(E_AC * rep.total_sops)
    ann = [16 * 16 * 16 * 2 * 9, 32 * 8 * 8 * 16 * 9, 128 * 512, 10 * 128]
    assert [r.ann_macs for r in rep.layers] == ann
    # binary spikes through a 2x2 pool reach at most the window of a pooled cell: per step a
    # pooled layer costs at most 4 x its ANN MACs
    for r in rep.layers[1:3]:
        assert r.sops <= 4 * cfg.data.T * r.ann_macs


@pytest.mark.parametrize("case", ["integer_linear_output", "events_input_pooled",
                                  "image_first_layer_macs", "learned_scale"])
def test_provenance_not_integrality(case):
    # the output of a weight layer is a current even when it happens to be integer; model
    # input holding counts is events (pooled or not); a learned scale of spikes is a multiply
    T, B = 2, 3
    if case == "integer_linear_output":
        lin = nn.Linear(3, 4, bias=False)
        with torch.no_grad():
            lin.weight.fill_(1.0)
        net = nn.Sequential(lin, nn.Linear(4, 2))
        rep = sops(net, torch.ones(T, B, 3), static_input_once=False)
        assert [r.input for r in rep.layers] == ["spikes", "analog"]
        assert rep.layers[1].macs == T * 4 * 2
    elif case == "events_input_pooled":
        x = _events(3, (T, B, 2, 6, 6))
        net = nn.Sequential(TimeDistributed(nn.AvgPool2d(3)), TimeDistributed(nn.Conv2d(2, 3, 2)))
        _check_row(sops(net, x).layers[0], [nn.AvgPool2d(3)], nn.Conv2d(2, 3, 2), x)
    elif case == "image_first_layer_macs":
        x = _events(4, (T, B, 2, 6, 6), high=255)
        net = nn.Sequential(TimeDistributed(nn.AvgPool2d(2)), TimeDistributed(nn.Conv2d(2, 3, 3)))
        row = sops(net, x, first_layer_macs=True, static_input_once=False).layers[0]
        assert row.input == "analog" and row.macs == T * 3 * 1 * 1 * 18 and row.sops == 0
    else:
        class Scaled(nn.Module):
            def __init__(self):
                super().__init__()
                self.relay = _relay((4,))
                self.w = nn.Parameter(torch.full((4,), 2.0))
                self.lin = nn.Linear(4, 2)

            def forward(self, x):
                return self.lin(self.relay(x) * self.w)

        rep = sops(Scaled(), 2 * _bernoulli(5, (T, B, 4)))
        assert rep.layers[0].input == "analog" and rep.layers[0].macs == T * 4 * 2
