r"""The IMP study's tables and figures: aggregate study runs into ``README.md`` with per-step
accuracy tables, curves and histograms of the learned initial potentials
(``membra report imp``).

A run is an ordinary ``membra train`` run folder (``summary.json``, ``config.toml``,
``checkpoints/``), as :func:`membra.experiments.study.run_arm` writes it. Runs are grouped by
dataset and arm (``run.tags.arm``, else recognised from the initial potential and loss, see
:data:`membra.experiments.study.ARMS`); each cell of the table is ``mean ± std`` over seeds
(sample std, ``n - 1``).

The spec's step-1 criterion (every IMP arm's step 1 at least 4 points above every zero-start
arm's) is stated for a static input, an image repeated at every step: a zero-start LIF with
tau = 2 needs a drive of 2 to fire at step 1, a start at ``V_0 = 0.5`` only 1.5. It is printed
only for datasets whose input is the same at every step (:func:`is_static`); event and
sequence data get the paired step-1 differences only.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch

from .study import ARMS, arm_of

__all__ = ["load_runs", "aggregate", "imp_report", "is_static"]

ZERO_START = ("baseline", "lts")
IMP_V_TH = 1.0  # threshold of the study's neurons (lif_event preset), marked on the V_0 histogram
IMP_ARMS = ("imp", "imp_lts", "imp_tet", "imp_ls_tet")
STATIC_DATASETS = ("digits", "cifar10", "image-folder")
"""Image datasets whose ``direct`` encoding repeats the same input at every step (used for
runs written before ``static_input`` was recorded)."""


def is_static(metrics: dict) -> bool:
    """Whether a run's input is the same at every time step: the ``static_input`` flag the
    study runner measures, else a static image dataset (:data:`STATIC_DATASETS`) with the
    ``direct`` encoding."""
    if "static_input" in metrics:
        return bool(metrics["static_input"])
    return metrics.get("dataset") in STATIC_DATASETS and \
        metrics.get("encoding", "direct") == "direct"


def _read_run(folder: Path) -> dict:
    """A ``membra train`` run folder (``summary.json`` + ``config.toml``) as a study run:
    ``dataset``, ``seed``, ``arm`` (``run.tags.arm``, else recognised from the initial
    potential and loss), ``per_step_accuracy``, ``acc_mean``, ``acc_last``, ``encoding``, the
    study's measures (``sops``, ``static_input``) when :class:`StudyMeasures` recorded them,
    and ``init_potentials`` ``{layer: tensor}`` of the run's latest checkpoint."""
    from ..train.checkpoint import load_checkpoint
    from ..train.config import parse_config

    summary = json.loads((folder / "summary.json").read_text())
    cfg = parse_config((folder / "config.toml").read_text())
    try:
        m = {"per_step_accuracy": summary["test_acc_per_step"],
             "acc_mean": summary["test_acc_mean"], "acc_last": summary["test_acc_last"]}
    except KeyError as err:
        raise ValueError(f"{folder / 'summary.json'}: missing {err}; not a finished run") \
            from None
    init = cfg.model.neuron_kwargs.get("init_potential", 0.0)
    study = summary.get("study", {})
    m.update(name=cfg.run.name, dataset=cfg.data.name, seed=cfg.run.seed,
             encoding=cfg.data.encoding, loss=cfg.train.loss, init_potential=init,
             arm=cfg.run.tags.get("arm") or arm_of(init, cfg.train.loss) or cfg.run.name,
             run_dir=str(folder), init_potentials={})
    for key in ("sops", "static_input"):
        if key in study:
            m[key] = study[key]
    if (folder / "checkpoints").is_dir() and any((folder / "checkpoints").iterdir()):
        tensors, _ = load_checkpoint(folder)
        m["init_potentials"] = {k[len("model."):].removesuffix(".init_potential"): v
                                for k, v in tensors.items()
                                if k.startswith("model.") and k.endswith("init_potential")
                                and v.numel() > 1}
    return m


def load_runs(paths) -> list[dict]:
    """Every finished run folder (``summary.json`` + ``config.toml``) under ``paths``
    (searched recursively), read by :func:`_read_run`."""
    runs = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"run folder not found: {p}")
        found = sorted({f.parent for f in p.rglob("summary.json")
                        if (f.parent / "config.toml").is_file()})
        runs += [_read_run(folder) for folder in found]
    if not runs:
        raise ValueError(f"no run folders (with summary.json and config.toml) found under "
                         f"{[str(p) for p in paths]}")
    return runs


def _ms(values) -> tuple[float, float]:
    """Mean and sample std (0 for one value)."""
    t = torch.tensor(values, dtype=torch.float64)
    std = t.std(unbiased=True).item() if len(values) > 1 else 0.0
    return t.mean().item(), std


def aggregate(runs: list[dict]) -> dict:
    """``{dataset: {arm: summary}}``; a summary holds ``n``, ``seeds``, ``T``,
    ``per_step`` ``[(mean, std)] * T``, ``acc_mean``, ``acc_last`` ``(mean, std)``,
    ``sops``/``energy_j``/``ann_energy_j`` means when present, ``static`` (every run's
    input is the same at every step, :func:`is_static`)."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in runs:
        groups[r.get("dataset", "?")][r["arm"]].append(r)
    out = {}
    for ds, arms in groups.items():
        order = [a for a in ARMS if a in arms] + sorted(a for a in arms if a not in ARMS)
        out[ds] = {}
        for arm in order:
            rs = arms[arm]
            Ts = {len(r["per_step_accuracy"]) for r in rs}
            if len(Ts) != 1:
                raise ValueError(f"{ds}/{arm}: runs with different T {sorted(Ts)}")
            steps = list(zip(*(r["per_step_accuracy"] for r in rs), strict=True))
            s = {"n": len(rs), "seeds": sorted(r.get("seed") for r in rs), "T": Ts.pop(),
                 "per_step": [_ms(v) for v in steps],
                 "per_step_runs": [r["per_step_accuracy"] for r in rs],
                 "acc_mean": _ms([r["acc_mean"] for r in rs]),
                 "acc_last": _ms([r["acc_last"] for r in rs]),
                 "runs": {key: {r.get("seed"): r[key] for r in rs}
                          for key in ("acc_mean", "acc_last")},
                 "init_potentials": [r["init_potentials"] for r in rs],
                 "static": all(is_static(r) for r in rs)}
            if all("sops" in r for r in rs):
                for k in ("sops", "macs", "energy_j", "ann_macs", "ann_energy_j"):
                    s[k] = _ms([r["sops"][k] for r in rs])[0]
            out[ds][arm] = s
    return out


def _pct(ms) -> str:
    return f"{100 * ms[0]:.1f} ± {100 * ms[1]:.1f}"


def _table(ds: str, arms: dict) -> list[str]:
    T = max(s["T"] for s in arms.values())
    head = ["arm", "seeds", *(f"t={t + 1}" for t in range(T)), "mean readout",
            "last readout"]
    energy = all("sops" in s for s in arms.values())
    if energy:
        head += ["SOPs / sample", "energy (nJ)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for arm, s in arms.items():
        row = [arm, str(s["n"]), *(_pct(v) for v in s["per_step"]), _pct(s["acc_mean"]),
               _pct(s["acc_last"])]
        if energy:
            row += [f"{s['sops']:,.0f}", f"{s['energy_j'] * 1e9:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    if energy:
        any_s = next(iter(arms.values()))
        lines += ["", f"Equally-sized ANN (one pass): {any_s['ann_macs']:,.0f} MACs = "
                      f"{any_s['ann_energy_j'] * 1e9:.1f} nJ per sample (45 nm: 4.6 pJ/MAC, "
                      "0.9 pJ/SOP). The SNN's first layer costs MACs on analog input (one "
                      "pass when the input is the same at every step) and SOPs on event "
                      "counts."]
    return lines


PAIRS = (("imp", "baseline", "mean CE"), ("imp_lts", "lts", "last-step CE"))


def _step1_verdict(arms: dict) -> list[str]:
    """Step-1 accuracy: IMP vs ``V_0 = 0`` with the same loss, and, for a static input only,
    the spec's criterion (the weakest IMP arm against the best zero-start arm, >= 4 points)."""
    lines = []
    s1 = {a: 100 * s["per_step"][0][0] for a, s in arms.items()}
    paired = [f"{a} − {b} ({loss}) = **{s1[a] - s1[b]:+.1f}**" for a, b, loss in PAIRS
              if a in arms and b in arms]
    if paired:
        lines.append("Step-1 accuracy, learnable V_0 minus V_0 = 0 with the same loss: "
                     + "; ".join(paired) + " points (seed means).")
    imp = [a for a in IMP_ARMS if a in arms]
    zero = [a for a in ZERO_START if a in arms]
    if imp and zero and all(s["static"] for s in arms.values()):
        worst = min(imp, key=s1.get)
        best = max(zero, key=s1.get)
        gap = s1[worst] - s1[best]
        lines.append(f"Spec criterion for a static input (every IMP arm's step 1 >= every "
                     f"zero-start arm's + 4): "
                     f"weakest IMP arm {worst} {s1[worst]:.1f}% − best zero-start arm {best} "
                     f"{s1[best]:.1f}% = **{gap:+.1f} points** "
                     f"({'met' if gap >= 4 else 'not met'}).")
    return lines


def _ranking(arms: dict, key: str, label: str) -> str:
    """Arms ranked by a readout, with the per-seed values behind each mean."""
    order = sorted(arms, key=lambda a: -arms[a][key][0])
    best, second = order[0], order[1] if len(order) > 1 else None
    parts = []
    for a in order:
        seeds = ", ".join(f"s{k}: {100 * v:.1f}" for k, v in sorted(arms[a]["runs"][key].items()))
        parts.append(f"{a} {100 * arms[a][key][0]:.1f} ({seeds})")
    gap = "" if second is None else (
        f" — {best} leads {second} by {100 * (arms[best][key][0] - arms[second][key][0]):.1f} "
        "points")
    return f"{label} ranking{gap}: " + "; ".join(parts) + "."


def _plots(ds: str, arms: dict, out: Path) -> list[str]:
    """``curves_<ds>.png`` (per-step accuracy, mean ± std over seeds) and ``imp_hist_<ds>.png``
    (learned V_0 of every IMP arm and seed, per layer); returns the file names."""
    from ..plotting import init_potential_figure, save, seed_curves_figure

    curves = {f"{arm} (n={s['n']})": ([100 * v[0] for v in s["per_step"]],
                                     [100 * v[1] for v in s["per_step"]], arm in ZERO_START)
              for arm, s in arms.items()}
    names = [save(seed_curves_figure(curves, f"{ds}: per-step accuracy, mean ± std over seeds"),
                  out / f"curves_{ds}.png", dpi=100).name]
    layers = defaultdict(list)
    for s in arms.values():
        for run in s["init_potentials"]:
            for layer, v in run.items():
                layers[layer].append(v.flatten())
    if layers:
        v0 = {f"layer {k}": torch.cat(layers[k]).numpy() for k in sorted(layers)}
        fig = init_potential_figure(
            v0, v_th=IMP_V_TH,
            title=f"{ds}: learned initial potentials (all IMP arms and seeds)")
        names.append(save(fig, out / f"imp_hist_{ds}.png", dpi=90).name)
    return names


def imp_report(paths, out: str | Path, *, title: str = "IMP study", plots: bool = True) -> Path:
    """Aggregate run folders into ``out/README.md`` (+ PNGs); returns the markdown path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(load_runs(paths))
    md = [f"# {title}", "",
          "Per-step test accuracy (each step's logits alone), mean and last-step readout "
          "accuracy, in %, mean ± std over seeds. Arms: baseline (V_0 = 0, mean CE), imp "
          "(learnable V_0, mean CE), imp_lts (IMP + last-step CE), imp_tet (IMP + TET, "
          "lambda 0), imp_ls_tet (IMP + label-smoothed TET, eps 0.01), lts (V_0 = 0 + "
          "last-step CE).", ""]
    for ds, arms in agg.items():
        md += [f"## {ds}", ""] + _table(ds, arms) + [""]
        for line in _step1_verdict(arms):
            md += [line, ""]
        md += [_ranking(arms, "acc_mean", "Mean-readout"), "",
               _ranking(arms, "acc_last", "Last-step-readout"), ""]
        if plots:
            for name in _plots(ds, arms, out):
                md += [f"![{name}]({name})", ""]
    path = out / "README.md"
    path.write_text("\n".join(md))
    return path


