"""A small conv SNN trained for a few steps gives the same loss trajectory with every
backend (the fused op is a drop-in for the reference loop inside membra.nn)."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import fused_backends
from torch import nn

from membra.nn import IF, LIF, TimeDistributed


def conv_snn(backend):
    torch.manual_seed(0)
    return nn.Sequential(
        TimeDistributed(nn.Conv2d(2, 6, 3, padding=1)),
        LIF(shape=(6, 8, 8), init_potential="learnable", learnable_tau=True, backend=backend),
        TimeDistributed(nn.Sequential(nn.Conv2d(6, 8, 3, stride=2, padding=1),
                                      nn.BatchNorm2d(8))),
        IF(backend=backend),
        TimeDistributed(nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 5))),
    )


def losses(backend, steps=4):
    model = conv_snn(backend)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 6, 2, 8, 8, generator=g) * 2.0  # [T, B, C, H, W]
    y = torch.randint(0, 5, (6,), generator=g)
    out = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(x).mean(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
    return out, model


@pytest.mark.parametrize("backend", fused_backends("cpu") or
                         [pytest.param("cpu", marks=pytest.mark.skip("cpu kernels not built"))])
def test_same_loss_trajectory(backend):
    want, ref_model = losses("reference")
    got, model = losses(backend)
    assert len(set(want)) > 1, "the loss should move"
    assert got == pytest.approx(want, rel=1e-4, abs=1e-5)
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters(),
                               strict=True):
        torch.testing.assert_close(p, q, atol=1e-4, rtol=1e-4, msg=name)
