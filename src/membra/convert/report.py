"""Evaluate a trained conversion run (ANN, PASCAL, naive over T) and write its report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .snn import qcfs_counts, to_snn
from .train import load_stage, stages

__all__ = ["eval_batches", "evaluate_snn", "evaluate_stage", "write_report",
           "steps_to_reach"]

_SUMMED = {"spikes", "sops", "macs", "reverse_spikes"}


def eval_batches(cfg, batch_size: int | None = None):
    """``[(x [B, ...], y)]`` of the run's test split (the ANN's input: time step 0)."""
    from ..train.engine import build_datasets

    test_ds = build_datasets(cfg)[1]
    loader = torch.utils.data.DataLoader(test_ds, batch_size=batch_size or
                                         cfg.data.eval_batch_size, shuffle=False)
    return [(x.transpose(0, 1)[0], y) for x, y in loader]


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
            steps = snn(x, return_all_steps=True)
            hits = (steps.argmax(-1) == y).sum(-1).double()
            same = (steps.argmax(-1) == pa).sum(-1).double()
            per_T = hits if per_T is None else per_T + hits
            agree_T = same if agree_T is None else agree_T + same
            out = steps[-1]
        else:
            out = snn(x)
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
        rep = snn.report()
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


def evaluate_stage(run, stage=None, naive_T: int = 64, dtype=torch.float32) -> dict:
    """ANN, PASCAL (temporal) and naive (T = 1..naive_T) results of one stage of a run."""
    net, cfg, st = load_stage(run, stage)
    batches = eval_batches(cfg)
    pascal = evaluate_snn(net, batches, "pascal", dtype=dtype)
    naive = evaluate_snn(net, batches, "naive", T=naive_T)
    return {"stage": st["name"], "L": st["L"], "sum_L": sum(st["L"].values()),
            "pascal": pascal, "naive": naive}


def write_report(run, out=None, naive_T: int = 64) -> Path:
    """``report.md``, ``report.json`` and plots (naive accuracy vs T against the ANN line and
    the PASCAL point; spikes and SOPs per layer; uniform L vs AL) for every stage of ``run``."""
    from ..plotting import layers_figure, naive_curve_figure, save, stages_figure

    root, record = stages(run)
    out = Path(out) if out is not None else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    results = [evaluate_stage(root, s["name"], naive_T) for s in record["stages"]]
    (out / "report.json").write_text(json.dumps(
        [{k: v for k, v in r.items()} for r in results], indent=2, default=str))
    figs = [save(naive_curve_figure(results), out / "naive_vs_T.png", dpi=120),
            save(layers_figure(results), out / "layers.png", dpi=120)]
    if len(results) > 1:
        figs.append(save(stages_figure(results), out / "uniform_vs_al.png", dpi=120))
    lines = [f"# Conversion report: {root.name}", "",
             f"Net `{record['net']}`; test split of the run's dataset. PASCAL runs the "
             "temporal simulation (IF neurons, float32); naive mode is IF conversion with "
             "threshold lambda, v(0) = lambda/2, soft reset, read out as the running mean.", "",
             "| stage | levels L | sum L | ANN acc | PASCAL acc | PASCAL = ANN predictions | "
             "count mismatches vs folded / trained ANN | max abs logit diff (folded / trained "
             "ANN) | "
             "PASCAL time steps | spikes / sample | naive acc T=1 / 2 / 4 / 8 / 16 / 64 | "
             "first naive T within 0.5 pp of the ANN | first naive T with all ANN predictions |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|"]
    for r in results:
        p, nv = r["pascal"], r["naive"]["acc_per_T"]
        pick = " / ".join(f"{100 * nv[t - 1]:.1f}" for t in (1, 2, 4, 8, 16, 64)
                          if t <= len(nv))
        reach = steps_to_reach(nv, p["ann_acc"] - 0.005)
        same = steps_to_reach(r["naive"]["agree_per_T"], 1.0)
        lines.append(f"| {r['stage']} | {list(r['L'].values())} | {r['sum_L']} | "
                     f"{100 * p['ann_acc']:.2f}% | {100 * p['snn_acc']:.2f}% | "
                     f"{100 * p['agreement']:.1f}% | {p['count_mismatches']} / "
                     f"{p['unfolded_count_mismatches']} of {p['neurons']:,} | "
                     f"{p['folded_logit_diff']:.2e} / "
                     f"{p['max_logit_diff']:.2e} | {p['time_steps']} | "
                     f"{p['report']['spikes']:,.0f} | {pick} | "
                     f"{reach if reach else f'> {len(nv)}'} | "
                     f"{same if same else f'> {len(nv)}'} |")
    lines += ["", "Two references: the BN-folded ANN (the network PASCAL is built from, same "
              "dtype) and the trained ANN (BN unfolded, float32). Counts are compared neuron by "
              "neuron; the predictions column is against the trained ANN. Folding rounds, so a "
              "pre-activation within rounding distance of a level boundary can change its count "
              "between the two ANNs, and the change propagates to later layers (a logit "
              "difference of one quantum or more). See docs/conversion.md, 'What is exact'."]
    for r in results:
        lines += ["", f"## Stage `{r['stage']}`: PASCAL per layer (per test sample)", "",
                  r["pascal"]["markdown"], "",
                  f"Naive at T = {len(r['naive']['acc_per_T'])}, per layer:", "",
                  r["naive"]["markdown"]]
    lines += [""] + [f"![{f.stem}]({f.name})" for f in figs]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out
