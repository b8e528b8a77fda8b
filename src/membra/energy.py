r"""Synaptic operations (SOPs) and the 45 nm energy estimate of a spiking network.

For every weight layer (``nn.Linear``, ``nn.Conv1d/2d/3d``, also inside
:class:`membra.nn.TimeDistributed`) a forward hook looks at the tensor actually fed into it:

- **spikes** (non-negative integer values: binary spikes, spike counts after an ADD
  residual, or the event counts of event-camera frames fed to the first layer): each spike
  costs one accumulate per synapse it reaches,

  .. math:: \mathrm{SOP}_l = \sum_{\text{outputs } o} \sum_{i \in \mathrm{RF}(o)} s_i
     = \mathrm{op}_l(s;\ W = \mathbf{1}, b = 0) \text{ summed},

  i.e. the layer applied with all-ones weights to the spike-count map, exact at borders,
  strides and groups;
- **analog values** (the first layer's image, or anything non-integer such as the output of an
  average pool; ``first_layer_macs=True`` forces it for a first layer whose image happens to
  hold integers): dense multiply-accumulates, :math:`\mathrm{MAC}_l = N_{out} \cdot
  \mathrm{fan\_in}` per call. When the analog input is the same at every time step (a
  directly encoded image) the layer's current is the same too, so it is computed once and
  reused: it costs one dense pass (the ANN's MACs of that layer), not T
  (``static_input_once=True``, the convention of the conversion spec). A time-varying analog
  input costs T passes.

The equally-sized ANN runs every weight layer once per sample, densely:
:math:`\mathrm{MAC}^{ANN} = \sum_l N_{out,l} \cdot \mathrm{fan\_in}_l` (one time step).
Energy uses the 45 nm convention common in the SNN literature:
:math:`E_{SNN} = E_{MAC} \cdot \mathrm{MAC} + E_{AC} \cdot \mathrm{SOP}` with
:math:`E_{MAC} = 4.6` pJ, :math:`E_{AC} = 0.9` pJ; :math:`E_{ANN} = E_{MAC} \cdot
\mathrm{MAC}^{ANN}`. All counts are per sample (averaged over the batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["E_MAC", "E_AC", "WEIGHT_LAYERS", "LayerOps", "SOPReport", "sops", "ones_op"]

E_MAC = 4.6e-12
"""Energy of one 32-bit float multiply-accumulate at 45 nm, joules."""
E_AC = 0.9e-12
"""Energy of one 32-bit float accumulate (a synaptic operation) at 45 nm, joules."""

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class LayerOps:
    """Counts of one weight layer, per sample."""

    name: str
    kind: str                 # module class name
    input: str = ""           # "spikes" | "analog"
    spikes: float = 0.0       # spikes (sum of the spike-count input) fed into the layer
    sops: float = 0.0         # accumulates caused by those spikes
    macs: float = 0.0         # dense multiply-accumulates (analog input)
    ann_macs: float = 0.0     # dense MACs of the same layer run once (the ANN)
    calls: int = 0

    @property
    def energy_j(self) -> float:
        return E_MAC * self.macs + E_AC * self.sops


@dataclass
class SOPReport:
    """Per-layer table and totals returned by :func:`sops` (counts per sample)."""

    layers: list[LayerOps] = field(default_factory=list)
    batch: int = 0
    steps: int = 0

    @property
    def total_sops(self) -> float:
        return sum(r.sops for r in self.layers)

    @property
    def total_macs(self) -> float:
        return sum(r.macs for r in self.layers)

    @property
    def ann_macs(self) -> float:
        return sum(r.ann_macs for r in self.layers)

    @property
    def energy_j(self) -> float:
        """SNN energy estimate ``E_MAC * MACs + E_AC * SOPs`` (joules per sample)."""
        return E_MAC * self.total_macs + E_AC * self.total_sops

    @property
    def ann_energy_j(self) -> float:
        """Energy of the equally-sized ANN, ``E_MAC * MACs_ANN`` (joules per sample)."""
        return E_MAC * self.ann_macs

    def as_dict(self) -> dict:
        return {"layers": [dict(vars(r), energy_j=r.energy_j) for r in self.layers],
                "batch": self.batch, "steps": self.steps, "sops": self.total_sops,
                "macs": self.total_macs, "energy_j": self.energy_j,
                "ann_macs": self.ann_macs, "ann_energy_j": self.ann_energy_j}

    def to_markdown(self) -> str:
        """Markdown table: one row per weight layer, totals, and the ANN next to it."""
        head = ("| layer | type | input | spikes | SOPs | MACs | ANN MACs | energy (nJ) |\n"
                "|---|---|---|---:|---:|---:|---:|---:|")
        rows = [f"| {r.name} | {r.kind} | {r.input} | {r.spikes:,.0f} | {r.sops:,.0f} | "
                f"{r.macs:,.0f} | {r.ann_macs:,.0f} | {r.energy_j * 1e9:.3f} |"
                for r in self.layers]
        total = (f"| **SNN total** (T={self.steps}) | | | "
                 f"{sum(r.spikes for r in self.layers):,.0f} | {self.total_sops:,.0f} | "
                 f"{self.total_macs:,.0f} | | {self.energy_j * 1e9:.3f} |")
        ann = (f"| **ANN, same size** | | | | | | {self.ann_macs:,.0f} | "
               f"{self.ann_energy_j * 1e9:.3f} |")
        return "\n".join([head, *rows, total, ann])


def ones_op(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module`` (Linear or Conv) applied to ``x`` with all-ones weights and no bias: at each
    output, the number of input events in its receptive field (exact at borders, strides and
    groups). Summed, it is the synaptic operations caused by the event map ``x``."""
    w = torch.ones_like(module.weight)
    if isinstance(module, nn.Linear):
        return x.sum(-1, keepdim=True).expand(*x.shape[:-1], module.out_features)
    if module.padding_mode != "zeros":
        raise ValueError(f"sops: {type(module).__name__} with padding_mode="
                         f"{module.padding_mode!r} is not supported (zeros padding only)")
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[w.dim() - 2]
    return conv(x, w.to(x.dtype), None, module.stride, module.padding, module.dilation,
                module.groups)


def _ones_op(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module`` applied to ``x`` with all-ones weights and no bias, summed."""
    return ones_op(module, x).sum()


def _dense_macs(module: nn.Module, out: torch.Tensor) -> float:
    """Multiply-accumulates of one dense call: outputs x fan-in."""
    fan_in = module.weight[0].numel()
    return float(out.numel()) * fan_in


def _items(module: nn.Module, x: torch.Tensor) -> int:
    """Number of samples one call of ``module`` processes: the vectors of a Linear input
    (``[T, B, N]`` and ``[T*B, N]`` both give ``T*B``), the batch of a Conv input."""
    if isinstance(module, nn.Linear):
        return x.numel() // module.in_features
    return x.shape[0] if x.dim() == module.weight.dim() else 1


def _static(x: torch.Tensor, T: int, B: int) -> bool:
    """True when ``x`` (``[T, B, ...]`` or ``[T*B, ...]``) is the same at every step."""
    if T < 2:
        return False
    if tuple(x.shape[:2]) == (T, B):
        v = x
    elif x.shape[0] == T * B:
        v = x.unflatten(0, (T, B))
    else:
        return False
    return bool((v == v[:1]).all())


def _is_counts(x: torch.Tensor) -> bool:
    return bool(((x >= 0) & (x == x.round())).all())


@torch.no_grad()
def sops(model: nn.Module, x: torch.Tensor, *, first_layer_macs: bool = False,
         static_input_once: bool = True) -> SOPReport:
    """Count synaptic operations per weight layer while ``model`` runs on ``x[T, B, ...]``.

    Args:
        model: a spiking network mapping ``[T, B, ...]`` to anything (its mode is left as is;
            call ``model.eval()`` first for inference counts).
        x: input sequence ``[T, B, *S]``.
        first_layer_macs: count the first weight layer as dense MACs even if its input is
            integer-valued (an image of integer pixels is still an analog input). By default
            the first layer's input is judged like any other: event or spike counts cost
            SOPs, analog values MACs.
        static_input_once: count an analog input that is identical at every step as one
            dense pass (its result is reused), else T passes.

    Returns:
        :class:`SOPReport` (per-layer :class:`LayerOps` in call order, totals, energies);
        ``report.to_markdown()`` prints the table.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"sops: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or 0 in x.shape[:2]:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"sops: x must be a time-first input [T, B, ...] with T, B >= 1, "
                         f"got {got}")
    T, B = x.shape[:2]
    rows: dict[str, LayerOps] = {}
    order: list[str] = []

    def hook(name):
        def run(module, args, out):
            inp = args[0]
            row = rows.get(name)
            if row is None:
                row = rows[name] = LayerOps(name=name, kind=type(module).__name__)
                order.append(name)
            first = name == order[0]
            analog = (first and first_layer_macs) or not _is_counts(inp)
            dense = _dense_macs(module, out)
            row.calls += 1
            # per-step layers see T*B items; a stem computed once and repeated sees B
            items = B if _items(module, inp) == B and T > 1 else T * B
            row.ann_macs += dense / items
            if analog:
                kind = "analog"
                if static_input_once and _static(inp, T, B):
                    kind, dense = "analog, static (once)", dense / T
                row.input = kind if not row.input or row.input == kind else "mixed"
                row.macs += dense / B
            else:
                row.input = "spikes" if not row.input or row.input == "spikes" else "mixed"
                row.spikes += float(inp.sum()) / B
                row.sops += float(_ones_op(module, inp.to(module.weight.dtype))) / B
        return run

    handles = [m.register_forward_hook(hook(n or type(m).__name__))
               for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]
    if not handles:
        raise ValueError("sops: model has no Linear/Conv layers to count")
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return SOPReport(layers=[rows[n] for n in order], batch=B, steps=T)
