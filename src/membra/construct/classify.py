r"""Spike-train classification: a compiled exact detector next to a trained LIF network.

Task (synthetic, seeded, offline): trains of ``T = 64`` Bernoulli(0.3) steps; class 1 iff the
pattern 1,0,1,1 (oldest to newest) occurs anywhere. Trains are drawn until both classes have
``n/2`` members (exactly balanced), then split 3000/1000.

- Compiled: the baseline circuit of the window rule "the last 4 steps are 1,0,1,1";
  label = 1{OUT spikes at least once}. Exact by construction (asserted).
- Learned: ``Linear(1, 64) -> membra.nn.LIF -> Linear(64, 1)``, max-over-time readout of the
  per-step logits, BCE loss, surrogate gradients, BPTT, Adam(1e-3).
- Robustness: one random weight of each model scaled by 1 +- 1%, over ``trials`` draws; the
  accuracy on the test split is reported as mean and minimum over the draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .circuit import SpikingCircuit, Synapse
from .compile import compile_rule
from .rule import SpikeRule

__all__ = ["make_dataset", "ModelReport", "run_demo", "train_lif", "perturb_circuit"]

PATTERN = (1, 0, 1, 1)


def make_dataset(n: int = 4000, T: int = 64, rate: float = 0.3, pattern=PATTERN,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(X (T, n, 1) int8, y (n,) int64)``, classes exactly balanced, order shuffled."""
    if n % 2:
        raise ValueError(f"n must be even (balanced classes), got {n}")
    rule = SpikeRule.from_pattern(pattern)
    rng = np.random.default_rng(seed)
    kept = {0: [], 1: []}
    while min(len(v) for v in kept.values()) < n // 2:
        X = (rng.random((T, 1024, 1)) < rate).astype(np.int8)
        lab = rule(X).max(axis=0)
        for c in (0, 1):
            kept[c].extend(X[:, lab == c].transpose(1, 0, 2))
    X = np.stack(kept[0][: n // 2] + kept[1][: n // 2], axis=1)
    y = np.array([0] * (n // 2) + [1] * (n // 2), dtype=np.int64)
    perm = rng.permutation(n)
    return X[:, perm], y[perm]


@dataclass
class ModelReport:
    name: str
    accuracy: float
    n_params: int
    neurons: int
    spikes_per_train: float
    perturbed_mean: float = float("nan")
    perturbed_min: float = float("nan")


def circuit_predict(circ: SpikingCircuit, X: np.ndarray) -> tuple[np.ndarray, float]:
    sim = circ.simulate(X, return_all=True)
    return sim.out.max(axis=0), float(sim.spikes.sum(axis=(0, 2)).mean())


def perturb_circuit(circ: SpikingCircuit, index: int, factor) -> SpikingCircuit:
    """Copy of ``circ`` with synapse ``index`` scaled by ``factor`` (exact rational)."""
    from fractions import Fraction

    syns = list(circ.synapses)
    s = syns[index]
    syns[index] = Synapse(s.src, s.dst, s.weight * Fraction(factor))
    return SpikingCircuit(circ.inputs, circ.neurons, syns, circ.output, lam=circ.lam,
                          requires_clock=circ.requires_clock, groups=circ.groups)


class LIFDetector(nn.Module):
    """``[T, B, 1] -> [T, B]`` per-step logits; spikes of the hidden layer kept in ``.spikes``."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        from ..nn import LIF

        self.inp = nn.Linear(1, hidden)
        self.lif = LIF(shape=(hidden,))
        self.out = nn.Linear(hidden, 1)
        self.spikes = None

    def forward(self, x):
        s = self.lif(self.inp(x))
        self.spikes = s
        return self.out(s)[..., 0]


def train_lif(X, y, *, epochs: int = 30, hidden: int = 64, lr: float = 1e-3, batch: int = 64,
              seed: int = 0, log=None) -> LIFDetector:
    torch.manual_seed(seed)
    net = LIFDetector(hidden)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xt = torch.tensor(X, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    loss_fn = nn.BCEWithLogitsLoss()
    for ep in range(epochs):
        net.train()
        total = 0.0
        for idx in torch.randperm(len(yt), generator=g).split(batch):
            logit = net(xt[:, idx]).max(dim=0).values  # max-over-time readout
            loss = loss_fn(logit, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if log is not None:
            log(f"epoch {ep + 1}/{epochs}: loss {total / len(yt):.4f}")
    return net


@torch.no_grad()
def lif_predict(net: LIFDetector, X) -> tuple[np.ndarray, float]:
    net.eval()
    logit = net(torch.tensor(X, dtype=torch.float32)).max(dim=0).values
    return (logit > 0).long().numpy(), float(net.spikes.sum(dim=(0, 2)).mean())


def run_demo(*, n: int = 4000, n_train: int = 3000, epochs: int = 30, trials: int = 50,
             seed: int = 0, log=None) -> list[ModelReport]:
    """The classification demo; returns one :class:`ModelReport` per model."""
    for name, value, lo in (("n", n, 4), ("epochs", epochs, 1), ("trials", trials, 1)):
        if not isinstance(value, int) or value < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    if not 0 < n_train < n:
        raise ValueError(f"n_train must be in [1, n - 1] = [1, {n - 1}], got {n_train}")
    X, y = make_dataset(n=n, seed=seed)
    Xtr, ytr, Xte, yte = X[:, :n_train], y[:n_train], X[:, n_train:], y[n_train:]
    rng = np.random.default_rng(seed + 1)

    circ = compile_rule(SpikeRule.from_pattern(PATTERN))
    pred, spikes = circuit_predict(circ, Xte)
    acc = float((pred == yte).mean())
    if acc != 1.0:
        raise AssertionError(f"the compiled detector must be exact, got accuracy {acc}")
    accs = []
    for _ in range(trials):
        k = int(rng.integers(circ.n_weights))
        factor = "101/100" if rng.random() < 0.5 else "99/100"
        accs.append(float((circuit_predict(perturb_circuit(circ, k, factor), Xte)[0]
                           == yte).mean()))
    comp = ModelReport("compiled circuit (baseline)", acc, circ.n_weights, circ.n_neurons,
                       spikes, float(np.mean(accs)), float(np.min(accs)))

    net = train_lif(Xtr, ytr, epochs=epochs, seed=seed, log=log)
    pred, spikes = lif_predict(net, Xte)
    acc = float((pred == yte).mean())
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    sizes = np.array([w.numel() for w in weights])
    accs = []
    for _ in range(trials):
        which = int(rng.choice(len(weights), p=sizes / sizes.sum()))
        flat = weights[which].data.view(-1)
        k = int(rng.integers(flat.numel()))
        old = flat[k].item()
        flat[k] = old * (1.01 if rng.random() < 0.5 else 0.99)
        accs.append(float((lif_predict(net, Xte)[0] == yte).mean()))
        flat[k] = old
    n_params = sum(p.numel() for p in net.parameters())
    lif = ModelReport("trained LIF 1-64-1 (BPTT)", acc, n_params, 64 + 1, spikes,
                      float(np.mean(accs)), float(np.min(accs)))
    return [comp, lif]
