"""Shared helpers for the kernel tests (a plain module: pytest puts this folder on sys.path):
which fused backends run here, one op run with every gradient collected, a dispatch mode
that logs ops, and a spy on the direct kernel calls."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from membra.kernels import available_backends, if_sequence, lif_sequence


def fused_backends(device: str = "cpu") -> list[str]:
    return [b for b in available_backends(device) if b != "reference"]


def backend_params():
    """(backend, device) pairs: every fused backend on CPU, and on CUDA when present."""
    params = [pytest.param(b, "cpu", id=f"{b}") for b in fused_backends("cpu")]
    if torch.cuda.is_available():
        params += [pytest.param(b, "cuda", id=f"{b}-cuda", marks=pytest.mark.gpu)
                   for b in fused_backends("cuda")]
    if not params:
        params = [pytest.param(None, "cpu", marks=pytest.mark.skip("no fused backend here"))]
    return params


def run_op(backend, neuron, x, v0, tau, gs, gv, **kw):
    """Run the op on fresh leaves; returns (spikes, v_T, grad_x, grad_v0, grad_tau)."""
    x = x.detach().clone().requires_grad_(True)
    v0 = v0.detach().clone().requires_grad_(True) if isinstance(v0, torch.Tensor) else v0
    tau = tau.detach().clone().requires_grad_(True) if isinstance(tau, torch.Tensor) else tau
    if neuron == "lif":
        s, v = lif_sequence(x, v0, tau=tau, backend=backend, **kw)
    else:
        s, v = if_sequence(x, v0, backend=backend, **kw)
    leaves = [t for t in (x, v0, tau) if isinstance(t, torch.Tensor)]
    grads = torch.autograd.grad([s, v], leaves, [gs, gv], allow_unused=True)
    grads = list(grads)
    out = []
    for t in (x, v0, tau):
        out.append(grads.pop(0) if isinstance(t, torch.Tensor) else None)
    return (s, v, *out)


class OpLog(TorchDispatchMode):
    """Records the name of every op dispatched while active."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def spy_direct_calls(monkeypatch) -> list[str]:
    """The names of the ops whose kernels :mod:`membra.kernels.direct` calls directly from
    now on (the list fills as they run)."""
    from membra.kernels import direct

    calls: list[str] = []
    recorded = direct._recorded

    def counted(op, fn, args):
        calls.append(op._name)
        return recorded(op, fn, args)

    monkeypatch.setattr(direct, "_recorded", counted)
    return calls
