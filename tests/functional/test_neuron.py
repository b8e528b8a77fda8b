import math

import pytest
import torch

from membra.functional import if_step, lif_step


def hand_lif(x, v, tau, v_th, v_reset, reset):
    """Plain-float LIF step of the spec (no torch ops shared with the implementation)."""
    h = v + (x - (v - v_reset)) / tau
    s = 1.0 if h >= v_th else 0.0
    v_new = h - v_th * s if reset == "soft" else (v_reset if s else h)
    return s, v_new


def test_lif_golden_trajectory():
    # tau=2, x=1.5 constant from rest: h = 0.75, 1.125 -> fire, v = 0.125, h = 0.8125 ...
    x = torch.full((1,), 1.5)
    v = torch.zeros(1)
    got = []
    for _ in range(4):
        s, v = lif_step(x, v)
        got.append((s.item(), round(v.item(), 6)))
    assert got == [(0.0, 0.75), (1.0, 0.125), (0.0, 0.8125), (1.0, 0.15625)]


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("v_reset", [0.0, -0.3])
def test_lif_step_matches_hand_loop(reset, v_reset):
    g = torch.Generator().manual_seed(0)
    xs = (torch.rand(30, generator=g) * 2.5).tolist()
    v_t, v_h = torch.tensor([0.2]), 0.2
    for x in xs:
        s_t, v_t = lif_step(torch.tensor([x]), v_t, tau=3.0, v_th=0.8, v_reset=v_reset,
                            reset=reset)
        s_h, v_h = hand_lif(x, v_h, 3.0, 0.8, v_reset, reset)
        assert s_t.item() == s_h
        assert v_t.item() == pytest.approx(v_h, abs=1e-6)


def test_if_step_hard_and_soft():
    s, v = if_step(torch.tensor([0.6, 1.0, 1.7]), torch.tensor([0.0, 0.0, 0.0]))
    assert s.tolist() == [0.0, 1.0, 1.0]
    torch.testing.assert_close(v, torch.tensor([0.6, 0.0, 0.0]))
    s, v = if_step(torch.tensor([0.6, 1.0, 1.7]), torch.zeros(3), reset="soft")
    assert s.tolist() == [0.0, 1.0, 1.0]
    torch.testing.assert_close(v, torch.tensor([0.6, 0.0, 0.7]))


@pytest.mark.parametrize("detach", [True, False])
def test_detach_reset_changes_only_the_reset_path(detach):
    # soft reset: v = h - v_th * s; with detach the gradient of v w.r.t. x is dh/dx = 1/tau
    x = torch.tensor([1.9], dtype=torch.float64, requires_grad=True)
    s, v = lif_step(x, torch.tensor([0.5], dtype=torch.float64), detach_reset=detach)
    v.backward()
    u = (0.5 + (1.9 - 0.5) / 2) - 1.0
    sig = 1 / (1 + math.exp(-4 * u))
    sg = 4 * sig * (1 - sig)
    want = 0.5 if detach else 0.5 * (1 - sg)
    assert x.grad.item() == pytest.approx(want, rel=1e-12)


def test_bad_reset_name():
    with pytest.raises(ValueError, match="reset='zero'"):
        lif_step(torch.zeros(2), torch.zeros(2), reset="zero")


@pytest.mark.parametrize("kind", [math.nan, math.inf, -math.inf], ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("where", ["x", "v"])
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan", "rectangular", "triangle"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("step", [lif_step, if_step], ids=["lif", "if"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_nonfinite_potential_gives_nan_spike_and_potential(dtype, step, reset, surrogate,
                                                           where, kind):
    # a non-finite potential is never turned into a clean 0/1 spike or a finite reset value
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(9, generator=g) * 3 - 1).to(dtype)
    v = (torch.rand(9, generator=g) - 0.5).to(dtype)
    bad = [1, 4, 8]
    ref_s, ref_v = step(x, v, reset=reset, surrogate=surrogate)
    (x if where == "x" else v)[bad] = kind
    s, v_new = step(x, v, reset=reset, surrogate=surrogate)
    assert torch.isnan(s[bad]).all() and torch.isnan(v_new[bad]).all()
    good = [i for i in range(9) if i not in bad]
    assert torch.equal(s[good], ref_s[good]) and torch.equal(v_new[good], ref_v[good])
