"""Post-training conversion study on the bundled digits: a plain ReLU CNN (a shared
``self.relu`` and an ``F.relu``), :func:`~membra.convert.quantize_relu` at several levels and
scales, then PASCAL (equal to the calibrated QCFS net) and naive conversion at several T.

``membra convert calibrate`` runs it and writes ``reports/convert/calibrate.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .calibrate import quantize_relu
from .snn import to_snn

__all__ = ["DigitsReLUNet", "calibration_study", "study_markdown"]


class DigitsReLUNet(nn.Module):
    """Conv(1-16)-ReLU-Conv(16-32)-ReLU-AvgPool2-FC(512-64)-ReLU-FC(64-10), one shared
    ``self.relu`` (two call sites) and one ``F.relu``."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(32 * 16, 64), nn.Linear(64, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        h = F.avg_pool2d(self.relu(self.c2(self.relu(self.c1(x)))), 2)
        return self.fc2(F.relu(self.fc1(h.flatten(1))))


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(-1) == y).double().mean())


def calibration_study(levels=(2, 4, 8, 16), scales=("max", "percentile"),
                      T_list=(1, 2, 4, 8, 16, 32, 64), epochs: int = 30, seed: int = 0,
                      percentile: float = 99.9) -> dict:
    """Train :class:`DigitsReLUNet` (Adam, lr 3e-3, batch 64, ``epochs``) on the digits train
    split, calibrate on it, and measure test accuracy: the ReLU net; per (scale, L) the QCFS
    net, PASCAL (with its time steps and its agreement with the QCFS net) and naive at each
    T. Returns a dict (see :func:`study_markdown`)."""
    from ..data.builtin.digits import digits_arrays

    torch.manual_seed(seed)
    xtr, ytr = digits_arrays("train")
    xte, yte = digits_arrays("test")
    xtr, xte = xtr.unsqueeze(1), xte.unsqueeze(1)
    net = DigitsReLUNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(xtr), generator=g).split(64):
            opt.zero_grad()
            F.cross_entropy(net(xtr[idx]), ytr[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        out = {"relu_acc": _accuracy(net(xte), yte), "epochs": epochs, "seed": seed,
               "percentile": percentile, "T_list": list(T_list), "rows": []}
    for scale in scales:
        for L in levels:
            q = quantize_relu(net, xtr, L=L, scale=scale, percentile=percentile)
            with torch.no_grad():
                ann = q(xte)
            pascal = to_snn(q, "pascal")
            p_out = pascal(xte)
            naive = to_snn(q, "naive", T=max(T_list))(xte, return_all_steps=True)
            out["rows"].append({
                "scale": scale, "L": L, "qcfs_acc": _accuracy(ann, yte),
                "pascal_acc": _accuracy(p_out, yte), "pascal_steps": pascal.time_steps,
                "pascal_same": float((p_out.argmax(-1) == ann.argmax(-1)).double().mean()),
                "naive_acc": [_accuracy(naive[T - 1], yte) for T in T_list]})
    return out


def study_markdown(res: dict, command: str) -> str:
    """The study as a markdown report naming the command that made it."""
    Ts = " / ".join(str(T) for T in res["T_list"])
    lines = [
        "# Post-training conversion of a plain ReLU net (digits)", "",
        f"Made by `{command}` (CPU, seed {res['seed']}). Net: `membra.convert.calibrate_study."
        "DigitsReLUNet` (a shared `self.relu` called twice and an `F.relu`: 3 ReLU call "
        f"sites), trained {res['epochs']} epochs on the 1200 training digits; calibrated with "
        "`quantize_relu` on the same 1200 images; accuracy on the 597 test digits.", "",
        f"ReLU net: **{100 * res['relu_acc']:.2f}%**.", "",
        f"| scale | L | QCFS net | PASCAL (same prediction as QCFS) | PASCAL steps | "
        f"naive T = {Ts} |", "|---|---:|---:|---:|---:|---|"]
    for r in res["rows"]:
        scale = r["scale"] if r["scale"] == "max" else f"percentile {res['percentile']:g}"
        naive = " / ".join(f"{100 * a:.1f}" for a in r["naive_acc"])
        lines.append(f"| {scale} | {r['L']} | {100 * r['qcfs_acc']:.2f}% | "
                     f"{100 * r['pascal_acc']:.2f}% ({100 * r['pascal_same']:.1f}%) | "
                     f"{r['pascal_steps']} | {naive} |")
    lines += ["", "PASCAL equals the calibrated QCFS net (same predictions); its steps are "
              "1 + 3 L. Naive IF neurons use only the clip value λ (threshold), not L, so "
              "their accuracy depends on the scale and T only."]
    return "\n".join(lines) + "\n"
