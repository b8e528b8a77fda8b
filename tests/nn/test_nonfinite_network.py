"""A NaN or inf in the input of a spiking network reaches its loss (docs/kernels.md,
"Non-finite values"), so training sees it at the first step instead of learning from spikes
that silently turned to 0/1."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from membra.kernels import available_backends
from membra.nn import IF, LIF, TimeDistributed

BACKENDS = [b for b in ("reference", "cpu") if b in available_backends("cpu")]


@pytest.mark.parametrize("step", [0, 3, 5])
@pytest.mark.parametrize("kind", [math.nan, math.inf, -math.inf], ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("cls", [LIF, IF])
@pytest.mark.parametrize("backend", BACKENDS)
def test_nonfinite_input_reaches_the_loss(backend, cls, reset, kind, step):
    torch.manual_seed(0)
    net = nn.Sequential(TimeDistributed(nn.Linear(4, 8)), cls(reset=reset, backend=backend),
                        TimeDistributed(nn.Linear(8, 3)))
    x = torch.rand(6, 5, 4) * 2
    y = torch.randint(0, 3, (5,))
    clean = nn.functional.cross_entropy(net(x).mean(0), y)
    assert torch.isfinite(clean)
    x[step, 2, 1] = kind
    out = net(x)
    assert not torch.isfinite(out[step:, 2]).any(), "sample 2 is NaN from that step on"
    assert torch.isfinite(out[:, [0, 1, 3, 4]]).all() and torch.isfinite(out[:step]).all()
    assert not torch.isfinite(nn.functional.cross_entropy(out.mean(0), y))
