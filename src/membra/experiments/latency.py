"""PASCAL latency, counted the way the claim is made, against naive conversion.

PASCAL's abstract claims ResNet-34 on ImageNet at about 74 % "with a 64x reduction in the
number of inference timesteps". Its public code counts an *effective per-layer* step number, a
cost-weighted mean of the per-layer levels (:func:`effective_T`), not the sequential latency
of the spike-accumulation schedule, ``1 + sum L`` on the longest path (:func:`pascal_steps`).
This module reports both, and for naive conversion the ``T`` at which the SNN reaches the ANN's
accuracy minus 0.5 and 0.1 points and 100 % prediction agreement (:func:`naive_thresholds`),
with spikes and SOPs per sample at equal accuracy (counted by :func:`membra.energy.sops`).

``membra convert latency CONFIG...`` trains, per config and per depth, two runs with the
two-stage recipe of :mod:`membra.experiments.qcfs_pascal` (uniform ``L = 2``; uniform
``L = 4`` then AL), evaluates the three level settings and writes
``reports/convert/latency.md``. Finished runs and evaluated cases are skipped (resumable).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..convert import to_snn
from ..convert.report import evaluate_snn, steps_to_reach
from .latency_runs import (
    check_builds,
    check_depths,
    check_same_config,
    check_trained_accuracy,
    finished_run,
    interrupted_run,
    read_case,
    runs_of,
    stale_reason,
)

__all__ = ["effective_T_layer", "effective_T", "fan_in", "pascal_steps", "latency_counts",
           "T_to_reach", "naive_thresholds", "fmt_T", "resnet34_claim", "run_case",
           "latency_benchmark", "latency_markdown",
           "write_latency_report", "T_MAX"]

#: longest naive simulation of the benchmark
T_MAX = 256
#: the thresholds of naive conversion: accuracy at least ANN - 0.5 / 0.1 points, all
#: predictions equal to the ANN's
THRESHOLDS = (("acc-0.5", 0.005), ("acc-0.1", 0.001), ("agree-100", None))


# ---- counting -------------------------------------------------------------------------------
def effective_T_layer(L: int, fan_in: int) -> float:
    """PASCAL code's effective step count of one layer:
    ``T_eff = L (1 + (5L - 2) r) / (1 + L r)`` with ``r = 4 / (3 fan_in)``.

    It tends to ``L`` for wide layers (``r -> 0``) and is ``(1 + 3r)/(1 + r)`` for ``L = 1``.
    """
    if isinstance(L, bool) or not isinstance(L, int) or L < 1:
        raise ValueError(f"effective_T_layer: L must be an int >= 1, got {L!r}")
    if isinstance(fan_in, bool) or not isinstance(fan_in, int) or fan_in < 1:
        raise ValueError(f"effective_T_layer: fan_in must be an int >= 1, got {fan_in!r}")
    r = 4.0 / (3.0 * fan_in)
    return L * (1.0 + (5 * L - 2) * r) / (1.0 + L * r)


def effective_T(levels, fan_ins) -> float:
    """The mean over layers of :func:`effective_T_layer` (PASCAL code's reported number)."""
    levels, fan_ins = list(levels), list(fan_ins)
    if not levels or len(levels) != len(fan_ins):
        raise ValueError(f"effective_T: need one fan-in per level, got {len(levels)} levels "
                         f"and {len(fan_ins)} fan-ins")
    return sum(effective_T_layer(L, f) for L, f in zip(levels, fan_ins, strict=True)) / len(levels)


def fan_in(module: nn.Module) -> int:
    """Inputs per output of a weight layer: ``in_features``, or
    ``in_channels / groups * prod(kernel_size)``."""
    if isinstance(module, nn.Linear):
        return module.in_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        n = module.in_channels // module.groups
        for k in module.kernel_size:
            n *= k
        return n
    raise TypeError(f"fan_in: expected a Linear or Conv layer, got {type(module).__name__}")


def _feeding_weight(ops, i: int) -> nn.Module:
    """The weight layer whose current op ``i`` (a QCFS) integrates: depth first through the
    inputs in order (a residual add's body before its shortcut), through linear ops, never
    through another QCFS."""
    stack = list(reversed(ops[i].inputs))
    while stack:
        j = stack.pop()
        if ops[j].kind == "weight":
            return ops[j].module
        if ops[j].kind not in ("input", "qcfs"):
            stack += list(reversed(ops[j].inputs))
    raise ValueError(f"QCFS call site {ops[i].path!r} is not fed by a Linear/Conv layer; its "
                     "fan-in (for the effective step count) is undefined")


def pascal_steps(snn) -> int:
    """Sequential latency of a PASCAL SNN, ``1 + sum L`` on the longest path, from its
    levels alone (no forward pass): :meth:`~membra.convert.ConvertedSNN.schedule`."""
    return snn.schedule()


def latency_counts(model: nn.Module) -> dict:
    """The step counts of the PASCAL SNN of a QCFS ``model``: ``levels`` and ``fan_ins`` per
    QCFS call site, ``sum_L``, ``max_L``, ``total`` (1 + sum L on the longest path; a new sample
    can enter every ``max_L`` steps) and ``effective`` (:func:`effective_T`)."""
    snn = to_snn(model.eval(), "pascal")
    sites = [(op.module.L, fan_in(_feeding_weight(snn.ops, i)))
             for i, op in enumerate(snn.ops) if op.kind == "qcfs"]
    if not sites:
        raise ValueError("latency_counts: the model has no QCFS layer")
    levels = [s[0] for s in sites]
    fans = [s[1] for s in sites]
    return {"levels": levels, "fan_ins": fans, "sum_L": sum(levels), "max_L": max(levels),
            "total": pascal_steps(snn), "effective": effective_T(levels, fans)}


def T_to_reach(curve, target: float, eps: float = 1e-9) -> int | None:
    """The first ``T`` (1-based) with ``curve[T - 1] >= target`` up to ``eps`` (accuracies are
    ratios of counts, so ``0.985 - 0.005`` must admit ``0.98``), or None."""
    return steps_to_reach(curve, target - eps)


def naive_thresholds(acc_per_T, agree_per_T, ann_acc: float) -> dict:
    """For each of :data:`THRESHOLDS`: the first ``T`` of the naive curves where accuracy is
    at least ``ann_acc - drop`` or (``agree-100``) every prediction equals the ANN's; None
    where the curve never gets there."""
    out = {}
    for name, drop in THRESHOLDS:
        out[name] = (T_to_reach(agree_per_T, 1.0) if drop is None else
                     T_to_reach(acc_per_T, ann_acc - drop))
    return out


def fmt_T(T: int | None, T_max: int) -> str:
    """``"12"``, or ``"not by T = 256"`` for None."""
    return f"not by T = {T_max}" if T is None else str(T)


# ---- the claim's own network ----------------------------------------------------------------
def resnet34_claim(L_first: int = 16, L_second: int = 8) -> dict:
    """:func:`latency_counts` of the ImageNet ResNet-34 (no training: the counts depend on
    the levels and the layer shapes only), stem QCFS at ``L_first`` and in every basic block
    ``L_first`` after the first conv and ``L_second`` after the add (the "16 and 8 per block"
    of PASCAL's ResNet-34 configuration, as the conversion spec reads it)."""
    from ..convert import build_net, replace_relu, set_L
    from ..convert.qcfs import qcfs_layers

    torch.manual_seed(0)
    net = replace_relu(build_net("resnet34", in_shape=(3, 224, 224), num_classes=1000),
                       L=L_first, lam_init=1.0)
    set_L(net, {p: (L_second if p.endswith("relu2") else L_first)
                for p in qcfs_layers(net)})
    return latency_counts(net)


# ---- the benchmark --------------------------------------------------------------------------
def _evaluate(net, batches, T_max: int) -> dict:
    """PASCAL and naive results of one trained net (see :func:`run_case`)."""
    pascal = evaluate_snn(net, batches, "pascal")
    naive = evaluate_snn(net, batches, "naive", T=T_max)
    ann = pascal["ann_acc"]
    Ts = naive_thresholds(naive["acc_per_T"], naive["agree_per_T"], ann)
    at = {}
    for name in ("acc-0.5", "acc-0.1"):
        T = Ts[name]
        if T is not None:
            r = naive if T == T_max else evaluate_snn(net, batches, "naive", T=T)
            at[name] = {"T": T, "acc": r["snn_acc"], "spikes": r["report"]["spikes"],
                        "sops": r["report"]["sops"]}
    return {"ann_acc": ann, "counts": latency_counts(net),
            "pascal": {"acc": pascal["snn_acc"], "agreement": pascal["agreement"],
                       "time_steps": pascal["time_steps"], "spikes": pascal["report"]["spikes"],
                       "sops": pascal["report"]["sops"]},
            "naive": {"acc_per_T": naive["acc_per_T"], "agree_per_T": naive["agree_per_T"],
                      "thresholds": Ts, "at": at}, "T_max": T_max}


def run_case(run, stage: str, T_max: int = T_MAX, batch_size: int = 50) -> dict:
    """Evaluate one stage of a trained conversion run (naive up to ``T_max`` in batches of
    ``batch_size``: the naive simulation holds ``T_max`` steps of every activation)."""
    from .qcfs_pascal import eval_batches, load_stage

    net, cfg, st = load_stage(run, stage)
    batches = eval_batches(cfg, batch_size)
    res = _evaluate(net, batches, T_max)
    check_trained_accuracy(res["ann_acc"], st, sum(len(y) for _, y in batches), run)
    return res


def latency_benchmark(configs, depths=(7, 13), runs_root="runs/latency",
                      cache="reports/convert/latency", T_max: int = T_MAX,
                      overrides=(), log=print, train: bool = True) -> list[dict]:
    """Train (or reuse) and evaluate every (config, depth, level setting); returns one result
    dict per case (also cached as JSON under ``cache``; a cached case is reused unless
    :func:`~.latency_runs.stale_reason` finds it stale). An interrupted stage-1 run is
    resumed; a finished run trained under another config is a ``ValueError``. Every config
    and depth is checked before anything trains. With ``train=False`` only cached cases are
    returned, as they are: nothing is trained, simulated or read from ``runs_root``."""
    from .qcfs_pascal import load_convert_config, train_convert

    depths = check_depths(depths)
    plan = [(path, *load_convert_config(path, list(overrides))) for path in configs]
    if train:
        for path, cfg, sec in plan:
            for depth in depths:
                check_builds(cfg, sec, path, depth)
    results = []
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    for path, cfg, sec in plan:
        for depth in depths:
            for name, s, stages in runs_of(cfg, sec, depth):
                run_dir = Path(runs_root) / f"{Path(path).stem}_{name}"
                done = finished_run(run_dir, stages)
                if train and done is None:
                    resume = interrupted_run(run_dir)
                    log(f"{'resuming' if resume else 'training'} {resume or run_dir} ({sec.net}, "
                        f"depth {depth}, L = {s.L}{', then AL' if s.al else ''})")
                    done = Path(train_convert(cfg, s, run_dir=run_dir, resume=resume,
                                              log=log)["run_dir"])
                if train:
                    check_same_config(done, path, cfg, s)
                run_dir = done or run_dir
                for stage, label in stages.items():
                    key = cache / f"{Path(path).stem}_d{depth}_{label.replace(' = ', '')}.json"
                    res = read_case(key, depth, label) if key.is_file() else None
                    if res is None and not train:
                        log(f"skipped {key.stem}: not evaluated yet")
                        continue
                    why = stale_reason(res, run_dir, stage, T_max) if train and res else None
                    if res is None or why:
                        log(f"evaluating {run_dir} stage {stage} (naive up to T = {T_max}"
                            + (f"; the cached case {why}" if res else "") + ")")
                        res = run_case(run_dir, stage, T_max)
                        res.update(config=str(path), dataset=cfg.data.name, depth=depth,
                                   setting=label, run=str(run_dir), stage=stage)
                        key.write_text(json.dumps(res, indent=1))
                    results.append(res)
    return results


def _pct(a: float) -> str:
    return f"{100 * a:.1f}"


def latency_markdown(results, command: str, claim: dict | None = None) -> str:
    """The latency report: one row per case, then spikes and SOPs at equal accuracy."""
    lines = ["# PASCAL latency against naive conversion", "",
             f"Made by `{command}` (CPU). Each row: a narrow VGG-style QCFS net "
             "(`membra.convert.NETS['vgg_small']`, `depth` QCFS layers) trained with "
             "`membra convert train`'s recipe; accuracy on the dataset's test split. PASCAL "
             "equals the QCFS ANN; naive conversion is IF neurons read out as the running "
             "mean, simulated up to T = "
             f"{' or '.join(str(t) for t in sorted({r['T_max'] for r in results}) or [T_MAX])}"
             " (each 'not by T = N' names its row's).", "",
             "PASCAL step counts: **1 + ΣL**, the sequential latency of spike accumulation (the "
             "logits exist only after the last window); **max L**, the pipelined interval "
             "(a new sample every max L steps); **T_eff**, the mean over layers of "
             "`L (1 + (5L - 2) r) / (1 + L r)`, `r = 4 / (3 fan_in)`, the per-layer number "
             "PASCAL's code reports. Naive: the first T at which accuracy reaches ANN - 0.5 "
             "points, ANN - 0.1 points, and at which every prediction equals the ANN's.", ""]
    if claim is not None:
        lines += ["## The claim's network, counted both ways", "",
                  f"ResNet-34 (ImageNet stem, {len(claim['levels'])} QCFS layers, levels 16 "
                  "after each block's first conv and the stem, 8 after each add): "
                  f"T_eff = **{claim['effective']:.1f}**, max L = {claim['max_L']}, "
                  f"1 + ΣL = **{claim['total']}** "
                  f"({claim['total'] / claim['effective']:.0f}x T_eff). A '64x fewer steps' "
                  "figure computed from T_eff compares a per-layer count with naive "
                  "conversion's T, which is also per layer (all layers run concurrently); the "
                  "time to the first output is 1 + ΣL.", ""]
    lines += ["## Step counts", "",
              "| dataset | depth | levels | ANN acc | PASCAL acc | 1 + ΣL | max L | T_eff | "
              "naive T: ANN - 0.5 pt | ANN - 0.1 pt | 100 % agreement | naive acc at T = 1 / "
              "4 / 16 / 64 / 256 |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        c, Ts, nv = r["counts"], r["naive"]["thresholds"], r["naive"]["acc_per_T"]
        pick = " / ".join(_pct(nv[t - 1]) for t in (1, 4, 16, 64, 256) if t <= len(nv))
        lines.append(f"| {r['dataset']} | {r['depth']} | {r['setting']} {c['levels']} | "
                     f"{100 * r['ann_acc']:.2f}% | {100 * r['pascal']['acc']:.2f}% | "
                     f"{c['total']} | {c['max_L']} | {c['effective']:.2f} | "
                     + " | ".join(fmt_T(Ts[k], r["T_max"]) for k, _ in THRESHOLDS)
                     + f" | {pick} |")
    lines += ["", "## Spikes and SOPs per sample at equal accuracy", "",
              "| dataset | depth | levels | PASCAL: steps, spikes, SOPs | naive at ANN - 0.5 pt: "
              "T, acc, spikes, SOPs | naive at ANN - 0.1 pt: T, acc, spikes, SOPs |",
              "|---|---:|---|---|---|---|"]
    for r in results:
        p, at = r["pascal"], r["naive"]["at"]

        def cell(k, r=r, at=at):
            if k not in at:
                return f"not by T = {r['T_max']}"
            a = at[k]
            return (f"T = {a['T']}, {100 * a['acc']:.2f}%, {a['spikes']:,.0f}, "
                    f"{a['sops']:,.0f}")
        lines.append(f"| {r['dataset']} | {r['depth']} | {r['setting']} | {p['time_steps']}, "
                     f"{p['spikes']:,.0f}, {p['sops']:,.0f} | {cell('acc-0.5')} | "
                     f"{cell('acc-0.1')} |")
    lines += ["", "Spikes: all QCFS layers' spikes; SOPs: synaptic operations of the layers "
              "fed by spikes, counted by `membra.energy.sops` on the same simulation (the first "
              "layer's analog input costs MACs, the same for both), per test sample.", "",
              "![latency](latency.png)"]
    return "\n".join(lines) + "\n"


def write_latency_report(results, out, command: str, claim: dict | None = None) -> Path:
    """``latency.md``, ``latency.json`` and ``latency.png`` (:func:`membra.plotting.
    latency_figure`) under the folder ``out``; returns the markdown path."""
    from ..plotting import latency_figure, save

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps({"command": command, "claim": claim,
                                                  "cases": results}, indent=1))
    if results:
        save(latency_figure(results), out / "latency.png", dpi=120)
    md = out / "latency.md"
    md.write_text(latency_markdown(results, command, claim))
    return md
