"""A trained network as a ``torch.export`` program (``.pt2``): plain ATen ops, loadable with
``torch.export.load`` and runnable without membra.

While exporting, membra's neuron modules run the ``reference`` loop on their buffers
(``docs/kernels.md``, "torch.compile and torch.export"), so the program gives the eager
model's outputs and reads the thresholds and initial potentials from its own state. The time
steps ``T`` are fixed (the loop is unrolled); the batch size is left free when the model
allows it.
"""

from __future__ import annotations

import torch

__all__ = ["export_program"]


def export_program(model: torch.nn.Module, in_shape, T: int, *, batch: int = 2):
    """``(program, dynamic_batch)``: ``model`` exported on a random ``[T, batch, *in_shape]``
    input, with a free batch size (``dynamic_batch`` true) or, when the model fixes it, at
    ``batch``. ``model`` is put in eval mode (batch norm then uses its running statistics)."""
    if T < 1 or batch < 1:
        raise ValueError(f"T and batch must be >= 1, got T={T}, batch={batch}")
    model = model.eval()
    x = torch.rand(T, batch, *in_shape, generator=torch.Generator().manual_seed(0))
    try:
        dim = torch.export.Dim("batch", min=1)
        return torch.export.export(model, (x,), dynamic_shapes=({1: dim},)), True
    except Exception:  # noqa: BLE001 - a model whose code fixes the batch: export it as is
        return torch.export.export(model, (x,)), False
