"""Evaluate a converted SNN against its QCFS ANN on given batches: accuracy, agreement, logit
differences, count mismatches and the per-layer spikes/SOPs (what a conversion report shows;
the report of a trained run is written by :mod:`membra.experiments.qcfs_pascal`)."""

from __future__ import annotations

import math

import torch

from .snn import qcfs_counts, to_snn

__all__ = ["evaluate_snn", "steps_to_reach"]

_SUMMED = {"spikes", "sops", "macs", "reverse_spikes"}


def _max_abs_diff(current: float, a: torch.Tensor, b: torch.Tensor) -> float:
    """``max(current, max |a - b|)`` that keeps a NaN (Python's ``max`` would drop it)."""
    d = float((a.double() - b.double()).abs().max()) if a.numel() else 0.0
    return float("nan") if math.isnan(current) or math.isnan(d) else max(current, d)


def evaluate_snn(net, batches, mode: str, T: int | None = None, dtype=None, **kw) -> dict:
    """Accuracy of the ANN and of its SNN on ``batches``, prediction agreement, the largest
    logit difference, time steps, and the per-layer report summed over the batches (per
    sample). Naive mode also returns ``acc_per_T`` and ``agree_per_T`` (running-mean readout
    after each step: accuracy, and agreement with the ANN's prediction).

    Two references, kept apart:

    - ``net`` itself, the trained ANN with BN unfolded, in its own dtype: ``ann_acc``,
      ``agreement``, ``max_logit_diff`` and (PASCAL) ``unfolded_count_mismatches``;
    - (PASCAL) the BN-folded ANN in the SNN's dtype, the network the SNN is built from:
      ``count_mismatches`` out of ``neurons`` QCFS outputs, ``folded_agreement`` and
      ``folded_logit_diff``. Folding rounds, so a pre-activation on (or within rounding
      distance of) a level boundary can get different counts in the two ANNs
      (docs/conversion.md, "What is exact").
    """
    snn = to_snn(net, mode, T=T, dtype=dtype, **kw)
    folded = to_snn(net, "pascal", simulate="counts", dtype=dtype) if mode == "pascal" else None
    n = correct_ann = correct_snn = agree = mismatches = neurons = raw_mismatches = 0
    folded_agree = 0
    max_diff = folded_diff = 0.0
    per_T = agree_T = None
    rows = None
    for x, y in batches:
        ann, raw_counts = qcfs_counts(net, x.to(next(net.parameters()).dtype))
        pa = ann.argmax(-1)
        if mode == "naive":
            steps = snn.run_counted(x, return_all_steps=True)
            hits = (steps.argmax(-1) == y).sum(-1).double()
            same = (steps.argmax(-1) == pa).sum(-1).double()
            per_T = hits if per_T is None else per_T + hits
            agree_T = same if agree_T is None else agree_T + same
            out = steps[-1]
        else:
            out = snn.run_counted(x)
            ref = folded(x)
            folded_diff = _max_abs_diff(folded_diff, out, ref)
            folded_agree += int((out.argmax(-1) == ref.argmax(-1)).sum())
            for p, c in folded.counts.items():
                mismatches += int((snn.counts[p].double() != c.double()).sum())
                raw_mismatches += int((snn.counts[p].double() != raw_counts[p].double()).sum())
                neurons += c.numel()
        ps = out.argmax(-1)
        n += len(y)
        correct_ann += int((pa == y).sum())
        correct_snn += int((ps == y).sum())
        agree += int((pa == ps).sum())
        max_diff = _max_abs_diff(max_diff, out, ann)
        rep = snn.report()          # from the run above: no second simulation
        if rows is None:
            rows = [{k: v for k, v in r.items() if k not in _SUMMED} for r in rep.rows]
        for acc, r in zip(rows, rep.rows, strict=True):
            for k in _SUMMED & set(r):
                acc[k] = acc.get(k, 0.0) + r[k] * len(y)
    for r in rows:  # per sample over the whole split
        for k in _SUMMED & set(r):
            r[k] /= n
    rep.rows = rows
    out = {"mode": mode, "ann_acc": correct_ann / n, "snn_acc": correct_snn / n,
           "agreement": agree / n, "max_logit_diff": max_diff, "time_steps": snn.time_steps,
           "report": rep.as_dict(), "markdown": rep.to_markdown()}
    if per_T is not None:
        out["acc_per_T"] = (per_T / n).tolist()
        out["agree_per_T"] = (agree_T / n).tolist()
    if folded is not None:
        out.update(count_mismatches=mismatches, neurons=neurons, folded_logit_diff=folded_diff,
                   folded_agreement=folded_agree / n, unfolded_count_mismatches=raw_mismatches)
    return out


def steps_to_reach(acc_per_T, target: float) -> int | None:
    """The first ``T`` (1-based) whose accuracy is ``>= target``, or None."""
    return next((t + 1 for t, a in enumerate(acc_per_T) if a >= target), None)
