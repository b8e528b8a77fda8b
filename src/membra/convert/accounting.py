"""What a converted SNN counts: the per-call-site :class:`ConversionReport` (spikes, SOPs,
MACs, energy), :class:`StaticInput` (the SNN as a time-first model for
:func:`membra.energy.sops`) and :class:`SNNAccounting`, the counting methods of
:class:`~membra.convert.ConvertedSNN`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..energy import E_MAC, SOPReport, energy_j, sops

__all__ = ["ConversionReport", "StaticInput", "SNNAccounting"]


class StaticInput(nn.Module):
    """A converted SNN as a time-first model, for :func:`membra.energy.sops`:
    ``forward(x [T_in, B, ...])``, every step holding the same sample (the image is
    presented, not encoded), runs the SNN's temporal simulation on ``x[0]``. Use
    ``T_in = 1`` for PASCAL (the input window is one step) and ``T_in = T`` for naive mode
    (:meth:`ConvertedSNN.static_input` builds it). The SNN's output of the last call is
    kept in ``out`` (naive: every step's running mean with ``return_all_steps=True``)."""

    def __init__(self, snn: nn.Module, return_all_steps: bool = False):
        super().__init__()
        self.snn, self.return_all_steps = snn, return_all_steps
        self.out: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or not bool((x == x[:1]).all()):
            raise ValueError("StaticInput takes [T_in, B, ...] with the same sample at every "
                             "step (x.unsqueeze(0).expand(T_in, *x.shape))")
        self.out = self.snn._run(x[0], self.return_all_steps, "temporal")
        return self.out


@dataclass
class ConversionReport:
    """Per-layer spikes, synaptic operations and windows of one forward pass (per sample)."""

    mode: str
    time_steps: int
    rows: list[dict] = field(default_factory=list)

    @property
    def spikes(self) -> float:
        return sum(r.get("spikes", 0.0) for r in self.rows)

    @property
    def sops(self) -> float:
        return sum(r.get("sops", 0.0) for r in self.rows)

    @property
    def macs(self) -> float:
        return sum(r.get("macs", 0.0) for r in self.rows)

    @property
    def ann_macs(self) -> float:
        return sum(r.get("ann_macs", 0.0) for r in self.rows)

    @property
    def energy_j(self) -> float:
        """``E_MAC * MACs + E_AC * SOPs`` per sample (45 nm: 4.6 pJ, 0.9 pJ)."""
        return energy_j(self.macs, self.sops)

    @property
    def ann_energy_j(self) -> float:
        return E_MAC * self.ann_macs

    def as_dict(self) -> dict:
        return {"mode": self.mode, "time_steps": self.time_steps, "rows": self.rows,
                "spikes": self.spikes, "sops": self.sops, "macs": self.macs,
                "ann_macs": self.ann_macs, "energy_j": self.energy_j,
                "ann_energy_j": self.ann_energy_j}

    def to_markdown(self) -> str:
        head = ("| layer | kind | L | window | spikes | SOPs | MACs | ANN MACs |\n"
                "|---|---|---:|---|---:|---:|---:|---:|")

        def cell(r, k, fmt="{:,.0f}"):
            return fmt.format(r[k]) if k in r else ""

        rows = [f"| {r['layer']} | {r['kind']} | {cell(r, 'L', '{}')} | "
                f"{cell(r, 'window', '{}')} | {cell(r, 'spikes')} | {cell(r, 'sops')} | "
                f"{cell(r, 'macs')} | {cell(r, 'ann_macs')} |" for r in self.rows]
        total = (f"| **total** ({self.mode}, {self.time_steps} time steps) | | | | "
                 f"{self.spikes:,.0f} | {self.sops:,.0f} | {self.macs:,.0f} | "
                 f"{self.ann_macs:,.0f} |")
        energy = (f"\nEnergy per sample (45 nm: 4.6 pJ/MAC, 0.9 pJ/SOP): SNN "
                  f"{self.energy_j * 1e9:.3f} nJ, QCFS ANN {self.ann_energy_j * 1e9:.3f} nJ.")
        return "\n".join([head, *rows, total]) + "\n" + energy


class SNNAccounting:
    """Time steps, SOPs and the per-call-site report of a
    :class:`~membra.convert.ConvertedSNN` (its base class)."""

    @property
    def time_steps(self) -> int:
        """Steps of the last forward: ``1 + sum L`` on the longest path (pascal), ``T`` (naive)."""
        if not hasattr(self, "_T_total"):
            raise RuntimeError("run the SNN on an input first")
        return self._T_total

    def static_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, ...]`` as the time-first input of :class:`StaticInput`: one step (PASCAL)
        or ``T`` equal steps (naive)."""
        return x.unsqueeze(0).expand(self.T if self.mode == "naive" else 1, *x.shape)

    def sops(self, x: torch.Tensor | None = None) -> SOPReport:
        """:func:`membra.energy.sops` of this SNN's temporal simulation on ``x`` (default:
        the last input), per weight call site (rows named ``net.<call site>``)."""
        x = self._last_input if x is None else x
        if x is None:
            raise RuntimeError("run the SNN on an input first")
        model = StaticInput(self)
        return sops(model, self.static_input(x), first_layer_macs=True)

    def run_counted(self, x: torch.Tensor, return_all_steps: bool = False) -> torch.Tensor:
        """``forward(x)`` (temporal simulation) with :func:`membra.energy.sops` counting on
        that same run: one simulation gives the output and what :meth:`report` shows."""
        self._check_input(x)        # its own message, before StaticInput's (NaN != NaN)
        model = StaticInput(self, return_all_steps)
        counted = sops(model, self.static_input(x), first_layer_macs=True)
        self._counted = counted
        return model.out

    def _ann_macs(self, x: torch.Tensor) -> dict[str, float]:
        """Dense MACs per sample of every weight call site of the folded ANN on ``x``."""
        names = {id(op.module): op.path for op in self.ops if op.kind == "weight"}
        macs: dict[str, float] = {}
        hooks = [m.register_forward_hook(lambda m, a, o: macs.__setitem__(
            names[id(m)], o.numel() / o.shape[0] * m.weight[0].numel()))
            for m in self.net.modules() if id(m) in names]
        try:
            with torch.no_grad():
                self.net(x[:1])
        finally:
            for h in hooks:
                h.remove()
        return macs

    def report(self) -> ConversionReport:
        """Per call site (per sample, for the last input): L, window and spikes of each
        spiking layer; SOPs (spike input) or MACs (analog input) of each weight layer, counted
        by :func:`membra.energy.sops` on the same temporal simulation, next to the ANN's MACs.
        After :meth:`run_counted` the SOPs are that run's; after a plain forward the
        temporal simulation re-runs on the same input to count them."""
        if self._last_input is None:
            raise RuntimeError("run the SNN on an input first")
        x = self._last_input
        counted = self._counted if self._counted is not None else self.sops(x)
        B = self._batch
        rep = ConversionReport(self.mode, self.time_steps)
        sop_rows = {r.name.removeprefix("snn.net."): r for r in counted.layers}
        ann = self._ann_macs(x)
        for op in self.ops:
            if op.kind == "qcfs":
                row = {"layer": op.path, "kind": "neuron", "L": op.neuron.L if
                       self.mode == "pascal" else self.T, "window": self.windows[op.path],
                       "spikes": float(self.counts[op.path].sum()) / B}
                if op.path in self.reverse:
                    row["reverse_spikes"] = float(self.reverse[op.path].sum()) / B
                rep.rows.append(row)
            elif op.kind == "weight":
                r = sop_rows[op.path]
                row = {"layer": op.path, "kind": type(op.module).__name__,
                       "ann_macs": ann[op.path]}
                if "spikes" in r.input or "mixed" in r.input:
                    row["sops"] = r.sops
                    row["input_spikes"] = r.spikes
                if "analog" in r.input or "mixed" in r.input:
                    row["macs"] = r.macs
                rep.rows.append(row)
        return rep
