import io

import pytest
import torch
from torch import nn

from membra.kernels import if_sequence, lif_sequence
from membra.nn import IF, LIF, TimeDistributed, param_groups


def test_imp_plumbing():
    lif = LIF(shape=(2, 4, 4), init_potential="learnable")
    p = dict(lif.named_parameters())["init_potential"]
    assert isinstance(p, nn.Parameter) and p.shape == (1, 2, 4, 4)
    assert p.min() >= 0.4 and p.max() <= 0.6
    assert "init_potential" in lif.state_dict()
    lif2 = LIF(shape=(2, 4, 4), init_potential="learnable", init_range=(-0.2, 0.2))
    assert lif2.init_potential.abs().max() <= 0.2


def test_imp_used_as_v0_and_restarts_every_call():
    lif = LIF(shape=(3,), init_potential="learnable")
    x = torch.rand(4, 5, 3) * 2
    s1, v1 = lif.run(x)
    s2, v2 = lif.run(x)
    assert torch.equal(s1, s2) and torch.equal(v1, v2)
    ref_s, ref_v = lif_sequence(x, lif.init_potential.detach(), backend="reference")
    torch.testing.assert_close(s1, ref_s)
    torch.testing.assert_close(v1, ref_v)


def test_zero_init_equals_zero_state():
    x = torch.randn(6, 4, 7) * 2
    assert torch.equal(LIF()(x), lif_sequence(x, None)[0])
    assert torch.equal(IF(init_potential=0.0)(x), if_sequence(x, torch.zeros(4, 7))[0])


def test_imp_gradient_finite_and_nonzero():
    lif = LIF(shape=(2, 3, 3), init_potential="learnable")
    (lif(torch.rand(5, 4, 2, 3, 3) * 2)).sum().backward()
    g = lif.init_potential.grad
    assert g.shape == (1, 2, 3, 3) and torch.isfinite(g).all() and g.abs().sum() > 0


def test_learnable_tau_gets_gradient():
    lif = LIF(shape=(4,), learnable_tau=True, tau=3.0)
    assert isinstance(lif.raw_tau, nn.Parameter)
    lif(torch.rand(5, 2, 4) * 2).sum().backward()
    assert lif.raw_tau.grad is not None and lif.raw_tau.grad.abs() > 0
    assert not isinstance(LIF().tau, nn.Parameter) and "tau" in dict(LIF().named_buffers())


@pytest.mark.parametrize("cls", [LIF, IF])
def test_step_loop_equals_run(cls):
    layer = cls(shape=(3, 2), init_potential="learnable")
    x = torch.randn(9, 4, 3, 2) * 1.5
    s_seq, v_seq = layer.run(x)
    v = None
    outs = []
    for t in range(9):
        s, v = layer.step(x[t], v)
        outs.append(s)
    assert torch.equal(torch.stack(outs), s_seq) and torch.equal(v, v_seq)


def test_run_with_explicit_state_continues():
    lif = LIF()
    x = torch.randn(8, 2, 5) * 2
    s_all, v_all = lif.run(x)
    s_a, v_a = lif.run(x[:3])
    s_b, v_b = lif.run(x[3:], v_a)
    assert torch.equal(torch.cat([s_a, s_b]), s_all) and torch.equal(v_b, v_all)


def test_save_load_roundtrip():
    a = LIF(shape=(5,), init_potential="learnable")
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = LIF(shape=(5,), init_potential="learnable")
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(a.init_potential, b.init_potential)


def test_training_moves_imp():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), LIF(shape=(16,), init_potential="learnable"),
                        nn.Linear(16, 16), LIF(shape=(16,), init_potential="learnable"),
                        nn.Linear(16, 2))
    before = [net[1].init_potential.detach().clone(), net[3].init_potential.detach().clone()]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.rand(4, 32, 6)
    y = (x[0, :, 0] > 0.5).long()
    for _ in range(50):
        loss = nn.functional.cross_entropy(net(x).mean(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert not torch.equal(before[0], net[1].init_potential)
    assert not torch.equal(before[1], net[3].init_potential)


def test_tensor_init_potential_buffer_or_parameter():
    v0 = torch.full((1, 3), 0.25)
    fixed = LIF(shape=(3,), init_potential=v0)
    assert "init_potential" in dict(fixed.named_buffers())
    learn = IF(shape=(3,), init_potential=v0, learnable_potential=True)
    assert "init_potential" in dict(learn.named_parameters())
    v0.fill_(9.0)  # the module keeps its own copy
    assert fixed.init_potential.max().item() == 0.25


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(init_potential="learnable"), ValueError, "needs shape"),
    (dict(init_potential="random", shape=(3,)), ValueError, "init_potential='random'"),
    (dict(init_potential=[0.1]), TypeError, "init_potential must be"),
    (dict(shape=(3,), init_potential=torch.zeros(1, 4)), ValueError, "does not broadcast"),
    (dict(tau=-1.0), ValueError, "tau must be"),
    (dict(reset="zero"), ValueError, "reset='zero'"),
    (dict(surrogate="erf"), ValueError, "surrogate='erf'"),
    (dict(shape=(0, 3)), ValueError, "shape must be"),
    (dict(backend="gpu9"), ValueError, "backend='gpu9'"),
    (dict(shape=(2,), init_potential="learnable", init_range=(0.6, 0.4)), ValueError,
     "init_range"),
])
def test_constructor_errors(kwargs, err, match):
    with pytest.raises(err, match=match):
        LIF(**kwargs)


def test_shape_mismatch_names_both_shapes():
    lif = LIF(shape=(64, 32, 32), init_potential="learnable")
    with pytest.raises(ValueError, match=r"LIF\(shape=\(64, 32, 32\)\) got per-sample shape "
                                         r"\(64, 16, 16\)"):
        lif(torch.zeros(2, 1, 64, 16, 16))
    with pytest.raises(ValueError, match=r"\[T, B, \*shape\]"):
        LIF()(torch.zeros(3))
    with pytest.raises(ValueError, match="state must be"):
        LIF(shape=(3,)).step(torch.zeros(2, 3), torch.zeros(5, 3))


def test_resize_init_potential():
    lif = LIF(shape=(2, 4, 4), init_potential="learnable")
    means = lif.init_potential.mean(dim=(2, 3))
    lif.resize_init_potential((2, 2, 2), mode="mean")
    assert lif.init_potential.shape == (1, 2, 2, 2) and lif.shape == (2, 2, 2)
    torch.testing.assert_close(lif.init_potential[..., 0, 0], means)
    with pytest.raises(ValueError, match="same channels"):
        lif.resize_init_potential((3, 2, 2))


def test_param_groups_excludes_imp_tau_norm_bias():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), TimeDistributed(nn.BatchNorm2d(4)),
                        LIF(shape=(4, 6, 6), init_potential="learnable", learnable_tau=True),
                        nn.Flatten(2), nn.Linear(144, 3))
    decay, no_decay = param_groups(net, 0.06)
    assert decay["weight_decay"] == 0.06 and no_decay["weight_decay"] == 0.0
    ids = {id(p) for p in decay["params"]}
    assert ids == {id(net[0].weight), id(net[4].weight)}
    nd = {id(p) for p in no_decay["params"]}
    for p in (net[2].init_potential, net[2].raw_tau, net[1].module.weight, net[1].module.bias,
              net[0].bias, net[4].bias):
        assert id(p) in nd
    assert len(ids) + len(nd) == len(list(net.parameters()))
    with pytest.raises(ValueError, match="weight_decay"):
        param_groups(net, -1)


def test_time_distributed_equals_per_step():
    conv = nn.Conv2d(2, 3, 3, padding=1)
    td = TimeDistributed(conv)
    x = torch.randn(4, 5, 2, 6, 6)
    y = td(x)
    assert y.shape == (4, 5, 3, 6, 6)
    for t in range(4):
        torch.testing.assert_close(y[t], conv(x[t]))
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        td(torch.zeros(3))
