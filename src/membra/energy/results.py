"""Per-layer counts and totals of a :func:`~membra.energy.sops` call, and the 45 nm energy
per operation (:mod:`membra.energy` states the conventions)."""

from __future__ import annotations

from dataclasses import dataclass, field

E_MAC = 4.6e-12
"""Energy of one 32-bit float multiply-accumulate at 45 nm, joules."""
E_AC = 0.9e-12
"""Energy of one 32-bit float accumulate (a synaptic operation) at 45 nm, joules."""


def energy_j(macs: float, sops: float) -> float:
    """Energy estimate ``E_MAC * MACs + E_AC * SOPs`` in joules (45 nm: 4.6 pJ, 0.9 pJ)."""
    return E_MAC * macs + E_AC * sops


@dataclass
class LayerOps:
    """Counts of one weight layer, per sample."""

    name: str
    kind: str                 # module class name
    input: str = ""           # "spikes" | "analog"
    spikes: float = 0.0       # events fed into the layer (spikes, once per weight-free path)
    sops: float = 0.0         # accumulates caused by those spikes
    macs: float = 0.0         # dense multiply-accumulates (analog input)
    ann_macs: float = 0.0     # dense MACs of the same layer run once (the ANN)
    calls: int = 0

    @property
    def energy_j(self) -> float:
        return energy_j(self.macs, self.sops)


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
        return energy_j(self.total_macs, self.total_sops)

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


