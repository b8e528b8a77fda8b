r"""The IMP study's tables and figures: aggregate study runs into ``README.md`` with per-step
accuracy tables with 95% confidence intervals, paired-difference verdicts on the seed's claims,
firing rates and SOPs, curves and histograms of the learned initial potentials
(``membra report imp``).

A run is an ordinary ``membra train`` run folder (``summary.json``, ``config.toml``,
``metrics.jsonl``, ``checkpoints/``), as :func:`membra.experiments.study.run_arm` writes it. Runs
are grouped by dataset, encoding, T and neuron model (:func:`group_of`) and arm (``run.tags.arm``,
else recognised from the initial potential and loss, see :data:`membra.experiments.study.ARMS`);
each cell of the table is ``mean ± half-width`` of the 95% Student-t interval over seeds
(:mod:`membra.experiments.stats`). Each claim of :data:`CLAIMS` is a paired difference over the
seeds both arms ran, with a verdict (:func:`membra.experiments.stats.verdict`).

The spec's step-1 criterion (every IMP arm's step 1 at least 4 points above every zero-start
arm's) is stated for a static input, an image repeated at every step: a zero-start LIF with
tau = 2 needs a drive of 2 to fire at step 1, a start at ``V_0 = 0.5`` only 1.5. It is printed
only for datasets whose input is the same at every step (:func:`is_static`); so is the
convergence claim (LTS on static data). Event and sequence data get the other claims.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import torch

from .stats import RULE, epochs_to_reach, paired_difference, t_interval, verdict
from .study import ARMS, arm_of

__all__ = ["load_runs", "aggregate", "imp_report", "is_static", "group_of", "claim_rows", "CLAIMS"]

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


def _read_curve(folder: Path, key: str = "test_acc") -> list[float]:
    """The run's test accuracy ``key`` (``test_acc``: its own readout; ``test_acc_last``)
    after each epoch, from ``metrics.jsonl`` (the last row per epoch wins, so a resumed run
    counts each epoch once); ``[]`` if absent."""
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return []
    by_epoch = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {n} is not JSON ({err.msg})") from None
        if "epoch" in row and key in row:
            by_epoch[int(row["epoch"])] = float(row[key])
    return [by_epoch[e] for e in sorted(by_epoch)]


def _read_run(folder: Path) -> dict:
    """A ``membra train`` run folder (``summary.json`` + ``config.toml``) as a study run:
    ``dataset``, ``seed``, ``arm`` (``run.tags.arm``, else recognised from the initial
    potential and loss), ``per_step_accuracy``, ``acc_mean``, ``acc_last``, ``encoding``,
    ``neuron`` (``model.neuron``), ``T``, ``curve`` (test accuracy per epoch,
    :func:`_read_curve`), ``firing_rate``
    ``{layer: rate}`` at the end, the study's measures (``sops``, ``static_input``) when
    :class:`StudyMeasures` recorded them, and ``init_potentials`` ``{layer: tensor}`` of the
    run's latest checkpoint."""
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
             encoding=cfg.data.encoding, neuron=cfg.model.neuron, loss=cfg.train.loss,
             init_potential=init,
             arm=cfg.run.tags.get("arm") or arm_of(init, cfg.train.loss) or cfg.run.name,
             T=len(m["per_step_accuracy"]), run_dir=str(folder), init_potentials={},
             curve=_read_curve(folder), curve_last=_read_curve(folder, "test_acc_last"),
             firing_rate=dict(summary.get("firing_rate") or {}))
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


def group_of(run: dict) -> str:
    """The report section of a run: ``"<dataset> T=<T>"``, with the encoding when it is not
    ``direct`` (``"mnist-5k events T=8"``) and the neuron model when it is not ``lif``
    (``"mnist1d T=16 alif"``): runs of one dataset at another T, encoding or neuron model are
    another experiment."""
    enc = run.get("encoding") or "direct"
    neuron = run.get("neuron") or "lif"
    return (f"{run.get('dataset', '?')}{'' if enc == 'direct' else ' ' + enc} T={run['T']}"
            f"{'' if neuron == 'lif' else ' ' + neuron}")


def aggregate(runs: list[dict]) -> dict:
    """``{group: {arm: summary}}`` (:func:`group_of`); a summary holds ``n``, ``seeds``,
    ``T``, ``per_step`` ``[Interval] * T``, ``acc_mean``, ``acc_last`` (95% t-intervals over
    seeds, :func:`membra.experiments.stats.t_interval`), ``by_seed`` ``{measure: {seed:
    value}}`` for ``step1``, ``acc_mean``, ``acc_last`` and ``curve`` (test accuracy per
    epoch), ``firing_rate`` ``{layer: mean over seeds}``, ``sops``/``energy_j``/... means when
    present, ``static`` (every run's input is the same at every step, :func:`is_static`).
    Two runs of one arm with the same seed are a ``ValueError`` (pairing needs one per seed)."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in runs:
        groups[group_of(r)][r["arm"]].append(r)
    out = {}
    for ds, arms in groups.items():
        order = [a for a in ARMS if a in arms] + sorted(a for a in arms if a not in ARMS)
        out[ds] = {}
        for arm in order:
            rs = arms[arm]
            seeds = [r.get("seed") for r in rs]
            if len(set(seeds)) != len(seeds):
                dup = sorted({s for s in seeds if seeds.count(s) > 1}, key=str)
                raise ValueError(f"{ds}/{arm}: several runs with seed(s) {dup}: "
                                 + ", ".join(r["run_dir"] for r in rs if r.get("seed") in dup))
            steps = list(zip(*(r["per_step_accuracy"] for r in rs), strict=True))
            layers = sorted({k for r in rs for k in r["firing_rate"]})
            s = {"n": len(rs), "seeds": sorted(seeds, key=str), "T": rs[0]["T"],
                 "per_step": [t_interval(v) for v in steps],
                 "acc_mean": t_interval([r["acc_mean"] for r in rs]),
                 "acc_last": t_interval([r["acc_last"] for r in rs]),
                 "by_seed": {"step1": {r.get("seed"): r["per_step_accuracy"][0] for r in rs},
                             **{k: {r.get("seed"): r[k] for r in rs}
                                for k in ("acc_mean", "acc_last", "curve", "curve_last")}},
                 "firing_rate": {k: t_interval([r["firing_rate"][k] for r in rs
                                                if k in r["firing_rate"]]).mean
                                 for k in layers},
                 "init_potentials": [r["init_potentials"] for r in rs],
                 "static": all(is_static(r) for r in rs)}
            if all("sops" in r for r in rs):
                for k in ("sops", "macs", "energy_j", "ann_macs", "ann_energy_j"):
                    s[k] = t_interval([r["sops"][k] for r in rs]).mean
            out[ds][arm] = s
    return out


def _table(ds: str, arms: dict) -> list[str]:
    """Per-step accuracy and both readouts, mean ± 95% CI half-width over seeds, in %."""
    T = max(s["T"] for s in arms.values())
    head = ["arm", "seeds", *(f"t={t + 1}" for t in range(T)), "mean readout",
            "last readout"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for arm, s in arms.items():
        row = [arm, str(s["n"]), *(v.fmt() for v in s["per_step"]), s["acc_mean"].fmt(),
               s["acc_last"].fmt()]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _activity_table(arms: dict) -> list[str]:
    """Firing rate per spiking layer (test set, end of training) and SOPs / energy per
    sample, means over seeds, next to the equal-size ANN."""
    layers = sorted({k for s in arms.values() for k in s["firing_rate"]})
    energy = all("sops" in s for s in arms.values())
    if not layers and not energy:
        return []
    head = ["arm", *(f"rate {k}" for k in layers)]
    if energy:
        head += ["SOPs / sample", "energy (nJ)"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for arm, s in arms.items():
        row = [arm, *(f"{s['firing_rate'][k]:.3f}" if k in s["firing_rate"] else "–"
                      for k in layers)]
        if energy:
            row += [f"{s['sops']:,.0f}", f"{s['energy_j'] * 1e9:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    if energy:
        any_s = next(iter(arms.values()))
        lines += ["", f"Equally-sized ANN (one pass): {any_s['ann_macs']:,.0f} MACs = "
                      f"{any_s['ann_energy_j'] * 1e9:.1f} nJ per sample (45 nm: 4.6 pJ/MAC, "
                      "0.9 pJ/SOP). The SNN's first layer costs MACs on analog input (one "
                      "pass when the input is the same at every step) and SOPs on event "
                      "counts. Firing rate: spikes per neuron per step on the test set."]
    return lines


CLAIMS = (
    # (claim, arm a, arm b, measure, claimed sign of a - b, static input only)
    ("IMP raises step-1 accuracy (mean CE)", "imp", "baseline", "step1", +1, False),
    ("IMP raises step-1 accuracy (last-step CE)", "imp_lts", "lts", "step1", +1, False),
    ("LTS converges in fewer epochs (V_0 = 0)", "lts", "baseline", "curve", -1, True),
    ("LTS converges in fewer epochs (with IMP)", "imp_lts", "imp", "curve", -1, True),
    ("LTS converges in fewer epochs (V_0 = 0), last-step readout for both", "lts",
     "baseline", "curve_last", -1, True),
    ("LTS converges in fewer epochs (with IMP), last-step readout for both", "imp_lts", "imp",
     "curve_last", -1, True),
    ("LS-TET beats TET (mean readout)", "imp_ls_tet", "imp_tet", "acc_mean", +1, False),
)
"""The seed's claims, each a paired difference ``a - b`` with a claimed sign."""

MEASURES = {"step1": "step-1 accuracy", "acc_mean": "mean-readout accuracy",
            "curve": "epochs to reach {thr} (each arm's own readout)",
            "curve_last": "epochs to reach {thr} (last-step readout)"}


def epochs_threshold(curves) -> float:
    """The fixed accuracy of the convergence claim: the highest accuracy that every run of
    both arms reaches (the smallest per-run best test accuracy), so no run is censored."""
    return min(max(c) for c in curves)


def claim_rows(arms: dict) -> list[dict]:
    """Each claim of :data:`CLAIMS` whose two arms are present: ``claim``, ``a``, ``b``,
    ``kind`` (the measure's key), ``measure`` (text), ``diffs`` ``{seed: a - b}``,
    ``interval``, ``direction``, ``verdict`` (:func:`membra.experiments.stats.verdict`),
    ``scale`` (100 for accuracies, 1 for epochs), ``unit``; a claim that cannot be measured
    has ``skip`` (why) instead."""
    rows = []
    static = all(s["static"] for s in arms.values())
    for claim, a, b, measure, sign, static_only in CLAIMS:
        if a not in arms or b not in arms:
            continue
        row = {"claim": claim, "a": a, "b": b, "kind": measure, "direction": sign}
        if static_only and not static:
            rows.append({**row, "skip": "stated for a static input; this input changes "
                                        "from step to step"})
            continue
        if measure.startswith("curve"):
            curves = {arm: arms[arm]["by_seed"][measure] for arm in (a, b)}
            if not all(c for cs in curves.values() for c in cs.values()):
                rows.append({**row, "skip": "a run has no metrics.jsonl (per-epoch accuracy)"})
                continue
            thr = epochs_threshold([c for cs in curves.values() for c in cs.values()])
            va, vb = ({s: epochs_to_reach(c, thr) for s, c in curves[arm].items()}
                      for arm in (a, b))
            text, scale, unit = MEASURES[measure].format(thr=f"{100 * thr:.1f}%"), 1.0, \
                "epochs"
        else:
            va, vb = arms[a]["by_seed"][measure], arms[b]["by_seed"][measure]
            text, scale, unit = MEASURES[measure], 100.0, "points"
        try:
            diffs, iv = paired_difference(va, vb)
        except ValueError as err:
            rows.append({**row, "skip": str(err)})
            continue
        rows.append({**row, "measure": text, "diffs": diffs, "interval": iv, "scale": scale,
                     "unit": unit, "verdict": verdict(iv, sign)})
    return rows


def _claim_line(row: dict) -> str:
    """One claim as a markdown bullet: difference, 95% CI, per-seed values, verdict."""
    head = f"- **{row['claim']}** ({row['a']} − {row['b']}"
    if "skip" in row:
        return f"{head}): not measured — {row['skip']}."
    iv, k = row["interval"], row["scale"]
    digits = 1 if k == 100 else 2
    seeds = ", ".join(f"s{s} {k * d:+.{digits}f}" for s, d in row["diffs"].items())
    ci = "" if iv.lo is None else f", 95% CI {iv.fmt_ci(k, digits)}"
    return (f"{head}, {row['measure']}): {iv.fmt(k, digits, sign=True)} {row['unit']}{ci}, "
            f"paired seeds: {seeds} ⇒ **{row['verdict']}**.")


def _step1_criterion(arms: dict) -> list[str]:
    """For a static input only, the spec's criterion: the weakest IMP arm's step-1 mean at
    least 4 points above the best zero-start arm's."""
    s1 = {a: 100 * s["per_step"][0].mean for a, s in arms.items()}
    imp = [a for a in IMP_ARMS if a in arms]
    zero = [a for a in ZERO_START if a in arms]
    if not (imp and zero and all(s["static"] for s in arms.values())):
        return []
    worst = min(imp, key=s1.get)
    best = max(zero, key=s1.get)
    gap = s1[worst] - s1[best]
    return [f"Spec criterion for a static input (every IMP arm's step 1 >= every "
            f"zero-start arm's + 4): "
            f"weakest IMP arm {worst} {s1[worst]:.1f}% − best zero-start arm {best} "
            f"{s1[best]:.1f}% = **{gap:+.1f} points** "
            f"({'met' if gap >= 4 else 'not met'})."]


def _ranking(arms: dict, key: str, label: str) -> str:
    """Arms ranked by a readout, with the per-seed values behind each mean."""
    order = sorted(arms, key=lambda a: -arms[a][key].mean)
    parts = []
    for a in order:
        seeds = ", ".join(f"s{k}: {100 * v:.1f}"
                          for k, v in sorted(arms[a]["by_seed"][key].items(), key=str))
        parts.append(f"{a} {100 * arms[a][key].mean:.1f} ({seeds})")
    return f"{label} ranking: " + "; ".join(parts) + "."


def _slug(ds: str) -> str:
    """A report section as a file-name part: ``"mnist-5k T=4"`` -> ``"mnist-5k_T4"``."""
    return ds.replace(" ", "_").replace("=", "")


def _plots(ds: str, arms: dict, out: Path) -> list[str]:
    """``curves_<ds>.png`` (per-step accuracy, mean ± 95% CI over seeds) and
    ``imp_hist_<ds>.png`` (learned V_0 of every IMP arm and seed, per layer); returns the file
    names."""
    from ..plotting import init_potential_figure, save, seed_curves_figure

    curves = {f"{arm} (n={s['n']})": ([100 * v.mean for v in s["per_step"]],
                                     [100 * (v.half or 0.0) for v in s["per_step"]],
                                     arm in ZERO_START)
              for arm, s in arms.items()}
    names = [save(seed_curves_figure(curves, f"{ds}: per-step accuracy, mean ± 95% CI"),
                  out / f"curves_{_slug(ds)}.png", dpi=100).name]
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
        names.append(save(fig, out / f"imp_hist_{_slug(ds)}.png", dpi=90).name)
    return names


def imp_report(paths, out: str | Path, *, title: str = "IMP study", plots: bool = True,
               command: str | None = None) -> Path:
    """Aggregate run folders into ``out/README.md`` (+ PNGs); returns the markdown path.
    ``command`` (the command line that made the report) is written under the title."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    agg = aggregate(load_runs(paths))
    md = [f"# {title}", ""]
    if command:
        md += [f"Made by `{command}`.", ""]
    md += ["Per-step test accuracy (each step's logits alone), mean and last-step readout "
           "accuracy, in %: mean ± half-width of the 95% Student-t confidence interval over "
           "seeds (t with n − 1 degrees of freedom, sample std); one seed is marked (n=1) "
           "and has no interval. Arms: baseline (V_0 = 0, mean CE), imp "
           "(learnable V_0, mean CE), imp_lts (IMP + last-step CE), imp_tet (IMP + TET, "
           "lambda 0), imp_ls_tet (IMP + label-smoothed TET, eps 0.01), lts (V_0 = 0 + "
           "last-step CE).", "",
           "Claims are *paired* differences: two arms run with the same seed see the same "
           "batches in the same order, so each seed gives one difference a − b, and the "
           f"interval is the 95% t-interval of those differences. Verdict rule: {RULE}. "
           "Epochs to converge: the first epoch whose test accuracy (the arm's own "
           "readout, or the last-step readout for both arms) reaches the highest accuracy "
           "that every run of both arms reaches.", ""]
    for ds, arms in agg.items():
        md += [f"## {ds}", ""] + _table(ds, arms) + [""]
        rows = claim_rows(arms)
        if rows:
            md += ["Claims (paired over seeds):", ""] + [_claim_line(r) for r in rows] + [""]
        for line in _step1_criterion(arms):
            md += [line, ""]
        activity = _activity_table(arms)
        if activity:
            md += activity + [""]
        md += [_ranking(arms, "acc_mean", "Mean-readout"), "",
               _ranking(arms, "acc_last", "Last-step-readout"), ""]
        if plots:
            for name in _plots(ds, arms, out):
                md += [f"![{name}]({name})", ""]
    path = out / "README.md"
    path.write_text("\n".join(md))
    return path
