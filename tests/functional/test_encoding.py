import pytest
import torch

from membra.functional import direct, encode, latency, rate


def test_direct_repeats():
    x = torch.rand(3, 5)
    y = direct(x, 4)
    assert y.shape == (4, 3, 5)
    for t in range(4):
        assert torch.equal(y[t], x)


def test_rate_is_seeded_and_has_the_right_mean():
    x = torch.full((2000,), 0.3)
    a = rate(x, 50, generator=torch.Generator().manual_seed(1))
    b = rate(x, 50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert abs(a.mean().item() - 0.3) < 0.01


def test_latency_one_spike_brighter_earlier():
    x = torch.tensor([1.0, 0.5, 0.0, 0.01])
    s = latency(x, 5)
    assert s.shape == (5, 4)
    assert s.sum(0).tolist() == [1.0, 1.0, 0.0, 1.0]
    assert s.argmax(0)[:2].tolist() == [0, 2]
    assert s[:, 3].argmax().item() == 4


def test_encoder_errors():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rate(torch.tensor([1.5]), 3)
    with pytest.raises(TypeError, match="floating-point"):
        direct(torch.tensor([1, 2]), 3)
    with pytest.raises(ValueError, match="T must be"):
        direct(torch.rand(2), 0)
    with pytest.raises(ValueError, match="encoding='morse'"):
        encode(torch.rand(2), 3, "morse")
