"""Degradation-sweep reports: the summary per condition with bootstrap CIs, the markdown
tables (aggregate and per draw), ``sweep.json`` / ``episodes.csv`` / ``sweep.md`` and the plots
(:mod:`membra.plotting`), from the dict :func:`membra.control.sweep.run_sweep` returns.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .stats import (
    bootstrap_ci,
    draw_table,
    episode_recovered,
    episode_recovered_ci,
    min_loss,
    recovered_ci,
    recovered_fraction,
)

__all__ = ["summarize", "markdown_table", "draws_markdown", "load_sweep", "write_report"]


def _pairs(sweep: dict):
    """``[(label, off_row, on_row)]`` in grid order."""
    off = {(r["condition"], r["severity"]): r for r in sweep["rows"] if not r["dwam"]}
    on = {(r["condition"], r["severity"]): r for r in sweep["rows"] if r["dwam"]}
    out = []
    for key in off:
        label = key[0] if key[1] is None else f"{key[0]} {key[1]:g}"
        out.append((label, off[key], on.get(key)))
    return out


def _layer_mean(row: dict, key: str) -> float:
    """Mean over a row's layers of the firing statistic ``key`` (NaN if not recorded)."""
    vals = [v.get(key, np.nan) for v in row.get("layers", {}).values()]
    return float(np.mean(vals)) if vals else float("nan")


def _ci(x) -> tuple[float, float]:
    return bootstrap_ci(x)


def summarize(sweep: dict) -> list[dict]:
    """Per condition: mean return off/on with 95 % bootstrap CIs, the paired difference
    (on - off) with its CI, the recovered fraction with its CI (:mod:`.stats`), the
    per-draw table (weight degradations) and the rate CV / rate deviation off/on.

    Units of the bootstrap: degradation draws (each the mean over its episodes) where a
    condition has more than one draw; paired episodes otherwise (healthy, sensor noise)."""
    pairs = _pairs(sweep)
    h_off = next(p[1] for p in pairs if p[0] == "healthy")
    h_ret = np.asarray(h_off["draws"][0]["returns"], float) if "draws" in h_off else None
    H = h_off["mean"]
    out = []
    for label, a, b in pairs:
        item = {"condition": label, "off": a["mean"], "on": b["mean"],
                "cv": (a["cv"], b["cv"]), "rate_dev": (a["rate_dev"], b["rate_dev"]),
                "pop_cv": (a.get("pop_cv", np.nan), b.get("pop_cv", np.nan)),
                "rate_std": (_layer_mean(a, "rate_std"), _layer_mean(b, "rate_std")),
                "drift": b["drift"], "draws": None}
        for k in ("success_rate",):
            if k in a:
                item[k] = (a[k], b[k])
        if "draws" not in a:  # a sweep written before CIs existed
            out.append(item)
            continue
        if len(a["draws"]) > 1:
            off = np.array([d["mean"] for d in a["draws"]])
            on = np.array([d["mean"] for d in b["draws"]])
            item.update(units="draws", n=len(off), off_ci=_ci(off), on_ci=_ci(on),
                        diff_ci=_ci(on - off), draws=draw_table(off, on, H),
                        recovered=recovered_fraction(off, on, H),
                        recovered_ci=recovered_ci(off, on, H),
                        losing=int(sum(H - off > min_loss(H))))
        else:
            off = np.asarray(a["draws"][0]["returns"], float)
            on = np.asarray(b["draws"][0]["returns"], float)
            item.update(units="episodes", n=len(off), off_ci=_ci(off), on_ci=_ci(on),
                        diff_ci=_ci(on - off))
            if label == "healthy":
                item["change"] = (b["mean"] - a["mean"]) / max(abs(a["mean"]), 1e-9)
                item["change_ci"] = tuple(x / max(abs(a["mean"]), 1e-9)
                                          for x in item["diff_ci"])
            elif h_ret is not None and len(h_ret) == len(off):
                item["recovered"] = episode_recovered(off, on, h_ret)
                item["recovered_ci"] = episode_recovered_ci(off, on, h_ret)
        out.append(item)
    return out


def _fmt_ci(ci, pct: int | bool = False) -> str:
    """`` [lo, hi]`` (returns, 1 decimal) or percentages with ``pct`` decimals."""
    if ci is None or not np.all(np.isfinite(ci)):
        return ""
    return f" [{ci[0]:+.{pct}%}, {ci[1]:+.{pct}%}]" if pct is not False else \
        f" [{ci[0]:.1f}, {ci[1]:.1f}]"


def _pair(v) -> str:
    """``"off / on"`` with 3 decimals; ``n/a`` for a value a report did not record."""
    return " / ".join(f"{x:.3f}" if np.isfinite(x) else "n/a" for x in v)


def markdown_table(sweep: dict) -> str:
    """Per condition: return without and with DWAM (mean and 95 % CI), the paired
    difference, the recovered fraction with its CI (:func:`summarize`), success rate
    (navigation), rate deviation, rate CV and drift."""
    items = summarize(sweep)
    nav = "success_rate" in items[0]
    head = ["condition", "no DWAM [95% CI]", "DWAM [95% CI]", "DWAM - no DWAM [95% CI]",
            "recovered [95% CI]", "rate_dev off/on", "rate CV off/on", "rate std off/on",
            "pop. rate CV off/on", "drift"]
    if nav:
        head[4:4] = ["success off/on"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for it in items:
        if it["condition"] == "healthy" and "change" in it:
            rec = f"{it['change']:+.1%} (change){_fmt_ci(it['change_ci'], 1)}"
        elif "recovered" in it and np.isfinite(it["recovered"]):
            rec = f"{it['recovered']:+.0%}{_fmt_ci(it['recovered_ci'], 0)}"
            if it.get("units") == "draws":
                rec += f" ({it['losing']}/{it['n']} draws lose)"
        else:
            rec = "n/a (no loss)" if "units" in it else ""
        diff = it["on"] - it["off"]
        cells = [it["condition"], f"{it['off']:.1f}{_fmt_ci(it.get('off_ci'))}",
                 f"{it['on']:.1f}{_fmt_ci(it.get('on_ci'))}",
                 f"{diff:+.1f}{_fmt_ci(it.get('diff_ci'))}", rec,
                 f"{it['rate_dev'][0]:.3f} / {it['rate_dev'][1]:.3f}",
                 _pair(it["cv"]), _pair(it["rate_std"]), _pair(it["pop_cv"]),
                 f"{it['drift']:.3f}"]
        if nav:
            cells[4:4] = [f"{it['success_rate'][0]:.0%} / {it['success_rate'][1]:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def draws_markdown(sweep: dict) -> str:
    """One table per multi-draw condition: each draw's return off/on, its loss, its
    recovered fraction ("no loss" for a draw that loses nothing), rate CV and population
    rate CV off/on."""
    out = []
    pairs = {p[0]: p for p in _pairs(sweep)}
    for it in summarize(sweep):
        if not it["draws"]:
            continue
        _, a, b = pairs[it["condition"]]
        out += [f"### {it['condition']}: per draw", "",
                "| draw | no DWAM | DWAM | loss | recovered | rate CV off/on | "
                "pop. rate CV off/on |", "|---|---|---|---|---|---|---|"]
        for d, da, db in zip(it["draws"], a["draws"], b["draws"], strict=True):
            rec = f"{d['recovered']:+.0%}" if d["loses"] else "no loss"
            out.append(f"| {d['draw']} | {d['off']:.1f} | {d['on']:.1f} | {d['loss']:.1f} | "
                       f"{rec} | {_pair((da['cv'], db['cv']))} | "
                       f"{_pair((da.get('pop_cv', np.nan), db.get('pop_cv', np.nan)))} |")
        out.append("")
    return "\n".join(out)


def load_sweep(folder) -> dict:
    """A sweep read back from ``folder/sweep.json`` (episodes are not reloaded; rewriting the
    report keeps the folder's ``episodes.csv``)."""
    return json.loads((Path(folder) / "sweep.json").read_text()) | {"episodes": []}


def write_report(sweep: dict, out: str | Path, title: str | None = None,
                 command: str | None = None) -> Path:
    """Write ``sweep.md`` (table with CIs, per-draw tables, the ``command`` that produced
    it), ``sweep.json`` (rows), ``episodes.csv``, ``returns.png`` and ``firing.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps({k: v for k, v in sweep.items()
                                                if k != "episodes"}, indent=1) + "\n")
    if sweep["episodes"]:
        keys = list(dict.fromkeys(k for r in sweep["episodes"] for k in r))
        with open(out / "episodes.csv", "w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            w.writerows(sweep["episodes"])
    cfg = sweep["dwam_config"]
    tr = sweep.get("train", {})
    regime = ("persistent: reset once per draw, adaptation carried across episodes"
              + (f", guard K={cfg.get('guard_k')}" if cfg.get("guard_k") else "")
              if sweep.get("persist") else "reset every episode")
    md = [f"# {title or 'DWAM degradation sweep: ' + sweep['env_id']}", ""]
    if command:
        md += [f"Produced by: `{command}`", ""]
    md += [f"Controller: PopSAN-TD3 ({sweep.get('neuron', 'lif')} neurons) on "
           f"`{sweep['env_id']}`, training seed {tr.get('seed')}, {tr.get('steps')} steps "
           f"({tr.get('train_wall_s')} s on CPU), validation return "
           f"{tr.get('best_eval_return')}.",
           f"Evaluation: {sweep['episodes_per']} episodes per condition and draw (test env "
           f"seeds {sweep['test_seed']}..{sweep['test_seed'] + sweep['episodes_per'] - 1}), "
           f"{sweep['repeats']} weight-degradation draws; identical seeds and degraded "
           "weights with and without DWAM.",
           f"DWAM: eta={cfg['eta']}, zeta={cfg['zeta']}, a_theta={cfg['a_theta']}, "
           f"a_stat={cfg['a_stat']}, rho={cfg['rho']}, c0={cfg['c0']} (floor "
           f"{cfg['c0_min']}); {regime}.", "",
           "Means with 95 % percentile-bootstrap CIs (10,000 resamples, seed 0) over "
           "degradation draws (each draw = the mean over its episodes) for weight "
           "degradations, over paired episodes otherwise. `recovered` = sum over losing "
           "draws of (DWAM - no DWAM) / sum of (healthy - no DWAM); a draw *loses* when it "
           "costs more than 2 % of |healthy| (at least 1 point); draws that lose nothing are "
           "listed below and kept out of the ratio. `rate_dev` = sum over layers of mean "
           "|per-neuron rate - healthy rate|; `rate CV` = mean over layers and neurons of "
           "the temporal coefficient of variation of the neuron's rate (std/mean over "
           "control steps); `rate std` = the same with the std alone (the CV's numerator: a "
           "CV can rise only because the mean rate falls); `pop. rate CV` = mean over "
           "layers of the temporal CV of the "
           "layer's population rate (mean over its neurons), i.e. how much the layer's "
           "overall firing rate fluctuates from step to step; `drift` = ||W - W_ref|| / "
           "||W_ref|| at episode end.", "",
           markdown_table(sweep), "", draws_markdown(sweep), "![returns](returns.png)", "",
           "![firing](firing.png)", ""]
    (out / "sweep.md").write_text("\n".join(md))
    _plots(sweep, out)
    return out


def _plots(sweep: dict, out: Path) -> None:
    from ..plotting import save, sweep_firing_figure, sweep_returns_figure

    pairs = _pairs(sweep)
    save(sweep_returns_figure(pairs, sweep["env_id"]), out / "returns.png",
         bbox_inches="tight")
    save(sweep_firing_figure(pairs, sweep["env_id"]), out / "firing.png", dpi=100)
