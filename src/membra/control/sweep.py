"""Degradation sweeps: every condition with and without DWAM on identical seeds and identical
degraded weights, a markdown table, a CSV of episodes, and plots (:mod:`membra.plotting`).
"""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import numpy as np

from ..homeostasis import DWAM, DWAMConfig
from .checkpoint import _resolve, load_actor
from .degrade import NAV_ONLY
from .envs import make_env
from .evaluate import evaluate
from .stats import (
    bootstrap_ci,
    draw_table,
    episode_recovered,
    episode_recovered_ci,
    min_loss,
    recovered_ci,
    recovered_fraction,
)

__all__ = ["degradation_grid", "calibrated_dwam", "dwam_config_for", "run_sweep",
           "write_report", "load_sweep", "summarize", "check_seeds", "TEST_SEED", "VALIDATION_SEED",
           "DRAWS"]

TEST_SEED, VALIDATION_SEED, CALIBRATION_SEED = 1000, 2000, 0
SEED_BLOCK = 1000  # test env seeds are 1000..1999, validation 2000..2999, calibration 0..999
DRAWS = 12  # weight-degradation draws per condition in a sweep


def check_seeds(seed: int, episodes: int, split: str) -> None:
    """Raise ``ValueError`` unless env seeds ``seed .. seed+episodes-1`` lie in ``split``'s
    block (``"test"``: 1000-1999, ``"validation"``: 2000-2999): eta is tuned on validation
    seeds only and results are reported on test seeds only."""
    start = {"test": TEST_SEED, "validation": VALIDATION_SEED}[split]
    if not (start <= seed and seed + episodes <= start + SEED_BLOCK):
        raise ValueError(f"{split} runs use env seeds {start}..{start + SEED_BLOCK - 1}; got "
                         f"seeds {seed}..{seed + episodes - 1}")

_GRID = {
    "obs_gn": ((0.05, 0.1, 0.2, 0.5), 0.1),
    "joint_pos_noise": ((0.1,), 0.1),
    "joint_vel_noise": ((10.0,), 10.0),
    "weight_gn": ((0.01, 0.02, 0.05, 0.1), 0.05),
    "weight_zero": ((0.1, 0.2, 0.3, 0.5), 0.3),
    "quantize": ((255, 127, 31, 15), 255),
    "lidar_gn": ((0.05, 0.1, 0.2), 0.1),
    "ray_dropout": ((2, 4, 8), 4),
    "dynamic": ((1,), 1),
}
_JOINT = ("joint_pos_noise", "joint_vel_noise")


def degradation_grid(env_id: str, full: bool = False) -> list[tuple[str, float] | None]:
    """The spec's grid for ``env_id`` (``full``: every severity; else the defaults), healthy
    (``None``) first. Joint noise is skipped for the navigation task, nav conditions for the
    others."""
    nav = "LidarNav2D" in env_id
    out: list = [None]
    for name, (sevs, default) in _GRID.items():
        if (name in NAV_ONLY and not nav) or (name in _JOINT and nav):
            continue
        out += [(name, s) for s in (sevs if full else (default,))]
    return out


def dwam_config_for(cfg: dict, persist: bool = False, **overrides) -> DWAMConfig:
    """The DWAM config stored in a checkpoint's ``config.json`` (key ``"dwam"``; with
    ``persist``, its ``"persist"`` entries, set by ``membra control tune --persist``, on
    top), with ``overrides`` (``None`` values ignored)."""
    base = dict(cfg.get("dwam", {}).get("config", {}))
    if persist:
        base.update(cfg.get("dwam", {}).get("persist", {}))
    base.update({k: v for k, v in overrides.items() if v is not None})
    return DWAMConfig(**base)


def calibrated_dwam(actor, run, env_fn, config: DWAMConfig, episodes: int = 3) -> DWAM:
    """A DWAM on the healthy ``actor`` with the run's calibration (``dwam.safetensors``),
    calibrating (env seeds 0..episodes-1) and saving it when missing (never into a shipped
    controller's folder)."""
    from safetensors.torch import load_file, save_file

    from .checkpoint import is_shipped

    dwam = DWAM(actor, config)
    path = _resolve(run) / "dwam.safetensors"
    if path.is_file():
        dwam.load_state_dict(load_file(str(path)))
    else:
        dwam.calibrate(env_fn, episodes, seed=CALIBRATION_SEED)
        if not is_shipped(path.parent):
            try:
                save_file(dwam.calibration_dict(), str(path))
            except OSError:
                pass
    return dwam


def _summary(res: dict) -> dict:
    layers = res["layers"]
    out = {"mean": res["mean"], "std": res["std"], "n": len(res["returns"]),
           "rate_dev": float(sum(v.get("rate_dev", np.nan) for v in layers.values())),
           "cv": float(np.mean([v["cv"] for v in layers.values()])),
           "pop_cv": _layer_mean(res, "pop_cv"),
           "drift": float(np.mean([v["drift"] for v in layers.values()])),
           "layers": layers}
    for k in ("success_rate", "collision_rate", "timeout_rate"):
        if k in res:
            out[k] = res[k]
    return out


def run_sweep(run, episodes: int = 10, full: bool = False, repeats: int = DRAWS,
              dwam_config: DWAMConfig | None = None, seed: int = TEST_SEED,
              conditions=None, progress: bool = True, max_steps: int | None = None,
              persist: bool = False) -> dict:
    """Evaluate the checkpoint ``run`` on :func:`degradation_grid` (or ``conditions``) with
    and without DWAM, on test env seeds ``seed + e`` (:func:`check_seeds`). Weight
    degradations are drawn ``repeats`` times (degradation seeds ``0..repeats-1``), each
    evaluated on ``episodes`` episodes; ``persist``: DWAM is reset once per draw, not every
    episode (the deployed regime). Returns ``{"env_id", "dwam_config", "rows": [...],
    "episodes": [...]}``; each row keeps its per-draw means in ``row["draws"]``."""
    import torch

    check_seeds(seed, episodes, "test")
    torch.set_num_threads(1)
    actor, cfg = load_actor(run)
    env_id = cfg["env_id"]
    env_fn = functools.partial(make_env, env_id, **cfg.get("env_kwargs", {}))
    dcfg = dwam_config or dwam_config_for(cfg)
    dwam = calibrated_dwam(actor, run, env_fn, dcfg)
    healthy = dwam.healthy_rates()
    grid = conditions if conditions is not None else degradation_grid(env_id, full)
    jobs = [(c, arm) for c in grid for arm in (False, True)]
    bar = None
    if progress:
        from rich.progress import Progress
        bar = Progress()
        bar.start()
        total = sum(_n_draws(c, repeats) for c, _ in jobs)
        task = bar.add_task(f"sweep {env_id}", total=total)
    rows, episode_rows = [], []
    try:
        for cond, arm in jobs:
            reps = _n_draws(cond, repeats)
            res_all = []
            for r in range(reps):
                res = evaluate(actor, env_fn, episodes, seed=seed, degradation=cond,
                               dwam=dwam if arm else None, degradation_seed=r,
                               model_id=str(cfg.get("seed", 0)), healthy_rates=healthy,
                               max_steps=max_steps, reset_each_episode=not persist)
                res_all.append(res)
                for row in res["episodes"]:
                    episode_rows.append({"task": env_id, "model": cfg.get("seed", 0),
                                         "condition": cond[0] if cond else "healthy",
                                         "severity": cond[1] if cond else "",
                                         "repeat": r, "dwam": int(arm), **row})
                if bar is not None:
                    bar.update(task, advance=1)
            merged = _merge(res_all)
            rows.append({"condition": cond[0] if cond else "healthy",
                         "severity": cond[1] if cond else None, "dwam": arm,
                         **_summary(merged), "draws": [_draw(x) for x in res_all]})
    finally:
        if bar is not None:
            bar.stop()
    return {"env_id": env_id, "dwam_config": dwam.config_dict(), "episodes_per": episodes,
            "repeats": repeats, "test_seed": seed, "persist": persist, "train": {
                k: cfg.get(k) for k in ("steps", "best_eval_return", "train_wall_s", "seed")},
            "neuron": cfg["actor"].get("neuron", "lif"),
            "rows": rows, "episodes": episode_rows}


RANDOM_DEGRADATIONS = ("weight_gn", "weight_zero")  # quantize is deterministic: one draw


def _n_draws(cond, repeats: int) -> int:
    """Draws of a condition: ``repeats`` for random weight damage, else 1."""
    return repeats if cond is not None and cond[0] in RANDOM_DEGRADATIONS else 1


def _draw(res: dict) -> dict:
    """What a report keeps of one draw: its return statistics, firing summary, and returns."""
    return {k: v for k, v in _summary(res).items() if k != "layers"} | {
        "returns": res["returns"]}


def _merge(results: list[dict]) -> dict:
    if len(results) == 1:
        return results[0]
    rets = [x for r in results for x in r["returns"]]
    out = {"returns": rets, "mean": float(np.mean(rets)), "std": float(np.std(rets))}
    for k in ("success_rate", "collision_rate", "timeout_rate"):
        if k in results[0]:
            out[k] = float(np.mean([r[k] for r in results]))
    out["layers"] = {n: {s: float(np.mean([r["layers"][n][s] for r in results]))
                         for s in results[0]["layers"][n]} for n in results[0]["layers"]}
    return out


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
