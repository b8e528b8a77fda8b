"""Modules that :func:`membra.export.from_nir` builds besides membra's own layers.

:class:`InputMap` is the input side of a NIR neuron that membra's neuron does not have
(``y = scale * x + shift``, per neuron); :class:`GraphNet` runs a NIR graph that is not a chain
(every node's input is the sum of its incoming edges, NIR's rule) on ``[T, B, ...]``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["InputMap", "GraphNet", "INPUT"]

INPUT = "<input>"


class InputMap(nn.Module):
    """``y = scale * x + shift`` on ``[T, B, *S]`` (buffers broadcast to ``S``)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def extra_repr(self) -> str:
        return f"scale={tuple(self.scale.shape)}, shift={tuple(self.shift.shape)}"


class GraphNet(nn.Module):
    """A NIR graph (a DAG) as one module ``[T, B, *in] -> [T, B, *out]``.

    ``nodes`` maps node names (in a topological order) to modules, ``sources`` each node name
    to the names it reads; :data:`INPUT` is the graph input and ``output`` names the nodes summed
    into the graph output. A node with several sources gets their sum, left to right.
    """

    def __init__(self, nodes: dict[str, nn.Module], sources: dict[str, list[str]],
                 output: list[str]):
        super().__init__()
        self.layers = nn.ModuleDict({_key(k): m for k, m in nodes.items()})
        self.names = list(nodes)
        self.sources = {k: list(v) for k, v in sources.items()}
        self.output = list(output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {INPUT: x}

        def gather(names):
            total = values[names[0]]
            for n in names[1:]:
                total = total + values[n]
            return total

        for name in self.names:
            values[name] = self.layers[_key(name)](gather(self.sources[name]))
        return gather(self.output)


def _key(name: str) -> str:
    """A ModuleDict key for a NIR node name (no dots)."""
    return name.replace(".", "_")
