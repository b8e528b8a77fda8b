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

__all__ = ["degradation_grid", "calibrated_dwam", "dwam_config_for", "run_sweep",
           "write_report", "TEST_SEED", "VALIDATION_SEED"]

TEST_SEED, VALIDATION_SEED, CALIBRATION_SEED = 1000, 2000, 0

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


def dwam_config_for(cfg: dict, **overrides) -> DWAMConfig:
    """The DWAM config stored in a checkpoint's ``config.json`` (key ``"dwam"``), with
    ``overrides`` (``None`` values ignored)."""
    base = dict(cfg.get("dwam", {}).get("config", {}))
    base.update({k: v for k, v in overrides.items() if v is not None})
    return DWAMConfig(**base)


def calibrated_dwam(actor, run, env_fn, config: DWAMConfig, episodes: int = 3) -> DWAM:
    """A DWAM on the healthy ``actor`` with the run's calibration (``dwam.safetensors``),
    calibrating (env seeds 0..episodes-1) and saving it when missing."""
    from safetensors.torch import load_file, save_file

    dwam = DWAM(actor, config)
    path = _resolve(run) / "dwam.safetensors"
    if path.is_file():
        dwam.load_state_dict(load_file(str(path)))
    else:
        dwam.calibrate(env_fn, episodes, seed=CALIBRATION_SEED)
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
           "drift": float(np.mean([v["drift"] for v in layers.values()])),
           "layers": layers}
    for k in ("success_rate", "collision_rate", "timeout_rate"):
        if k in res:
            out[k] = res[k]
    return out


def run_sweep(run, episodes: int = 10, full: bool = False, repeats: int = 1,
              dwam_config: DWAMConfig | None = None, seed: int = TEST_SEED,
              conditions=None, progress: bool = True, max_steps: int | None = None) -> dict:
    """Evaluate the checkpoint ``run`` on :func:`degradation_grid` (or ``conditions``) with
    and without DWAM. Weight degradations are drawn ``repeats`` times (degradation seeds
    ``0..repeats-1``), each evaluated on ``episodes`` episodes (env seeds ``seed + e``).
    Returns ``{"env_id", "dwam_config", "rows": [...], "episodes": [...]}``."""
    import torch

    from .degrade import WEIGHT_DEGRADATIONS

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
        task = bar.add_task(f"sweep {env_id}", total=len(jobs))
    rows, episode_rows = [], []
    try:
        for cond, arm in jobs:
            reps = repeats if cond is not None and cond[0] in WEIGHT_DEGRADATIONS else 1
            res_all = []
            for r in range(reps):
                res = evaluate(actor, env_fn, episodes, seed=seed, degradation=cond,
                               dwam=dwam if arm else None, degradation_seed=r,
                               model_id=str(cfg.get("seed", 0)), healthy_rates=healthy,
                               max_steps=max_steps)
                res_all.append(res)
                for row in res["episodes"]:
                    episode_rows.append({"task": env_id, "model": cfg.get("seed", 0),
                                         "condition": cond[0] if cond else "healthy",
                                         "severity": cond[1] if cond else "",
                                         "repeat": r, "dwam": int(arm), **row})
            merged = _merge(res_all)
            rows.append({"condition": cond[0] if cond else "healthy",
                         "severity": cond[1] if cond else None, "dwam": arm,
                         **_summary(merged)})
            if bar is not None:
                bar.update(task, advance=1)
    finally:
        if bar is not None:
            bar.stop()
    return {"env_id": env_id, "dwam_config": dwam.config_dict(), "episodes_per": episodes,
            "repeats": repeats, "test_seed": seed, "train": {
                k: cfg.get(k) for k in ("steps", "best_eval_return", "train_wall_s", "seed")},
            "rows": rows, "episodes": episode_rows}


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


def markdown_table(sweep: dict) -> str:
    """Healthy return, each degradation without and with DWAM, and the fraction of the lost
    return DWAM recovers ``(on - off) / (healthy_off - off)`` (only where something was lost)."""
    pairs = _pairs(sweep)
    healthy = next(p[1]["mean"] for p in pairs if p[0] == "healthy")
    nav = "success_rate" in sweep["rows"][0]
    head = ["condition", "no DWAM", "DWAM", "recovered", "rate_dev off/on", "CV off/on",
            "drift"]
    if nav:
        head[3:3] = ["success off/on"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, a, b in pairs:
        lost = healthy - a["mean"]
        if label == "healthy":
            rec = f"{(b['mean'] - a['mean']) / max(abs(a['mean']), 1e-9):+.1%} (change)"
        elif lost > 0.02 * max(abs(healthy), 1.0):
            rec = f"{(b['mean'] - a['mean']) / lost:+.0%}"
        else:
            rec = "n/a (no loss)"
        cells = [label, f"{a['mean']:.1f} ± {a['std']:.1f}", f"{b['mean']:.1f} ± {b['std']:.1f}",
                 rec, f"{a['rate_dev']:.3f} / {b['rate_dev']:.3f}",
                 f"{a['cv']:.2f} / {b['cv']:.2f}", f"{b['drift']:.3f}"]
        if nav:
            cells[3:3] = [f"{a['success_rate']:.0%} / {b['success_rate']:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(sweep: dict, out: str | Path, title: str | None = None) -> Path:
    """Write ``sweep.md`` (table), ``sweep.json`` (rows), ``episodes.csv``, ``returns.png``
    (bar plot with std error bars) and ``firing.png`` (per-layer CV and rate deviation)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{k: v for k, v in r.items()} for r in sweep["rows"]]
    (out / "sweep.json").write_text(json.dumps({k: v for k, v in sweep.items()
                                                if k != "episodes"} | {"rows": rows},
                                               indent=1) + "\n")
    if sweep["episodes"]:
        keys = list(dict.fromkeys(k for r in sweep["episodes"] for k in r))
        with open(out / "episodes.csv", "w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            w.writerows(sweep["episodes"])
    cfg = sweep["dwam_config"]
    tr = sweep.get("train", {})
    md = [f"# {title or 'DWAM degradation sweep: ' + sweep['env_id']}", "",
          f"Controller: PopSAN-TD3 on `{sweep['env_id']}`, training seed {tr.get('seed')}, "
          f"{tr.get('steps')} steps ({tr.get('train_wall_s')} s on CPU), validation return "
          f"{tr.get('best_eval_return')}.",
          f"Evaluation: {sweep['episodes_per']} episodes per condition (env seeds "
          f"{sweep['test_seed']}..{sweep['test_seed'] + sweep['episodes_per'] - 1}), "
          f"{sweep['repeats']} weight-degradation draw(s); identical seeds and degraded weights "
          "with and without DWAM. Mean ± std over episodes.",
          f"DWAM: eta={cfg['eta']}, zeta={cfg['zeta']}, a_theta={cfg['a_theta']}, "
          f"a_stat={cfg['a_stat']}, rho={cfg['rho']}, c0={cfg['c0']} (floor {cfg['c0_min']}); "
          "reset every episode.", "",
          "`recovered` = (DWAM - no DWAM) / (healthy - no DWAM); `rate_dev` = sum over layers "
          "of mean |per-neuron rate - healthy rate|; `CV` = mean temporal CV of neuron rates; "
          "`drift` = ||W - W_ref|| / ||W_ref|| at episode end (mean over layers).", "",
          markdown_table(sweep), "", "![returns](returns.png)", "", "![firing](firing.png)", ""]
    (out / "sweep.md").write_text("\n".join(md))
    _plots(sweep, out)
    return out


def _plots(sweep: dict, out: Path) -> None:
    from ..plotting import save, sweep_firing_figure, sweep_returns_figure

    pairs = _pairs(sweep)
    save(sweep_returns_figure(pairs, sweep["env_id"]), out / "returns.png",
         bbox_inches="tight")
    save(sweep_firing_figure(pairs, sweep["env_id"]), out / "firing.png", dpi=100)
