"""Degradation sweeps: every condition with and without DWAM on identical seeds and identical
degraded weights (:func:`run_sweep`); the tables, CSV and plots it writes are in
:mod:`membra.control.sweep_report`, re-exported here.
"""

from __future__ import annotations

import functools
import json

import numpy as np

from ..homeostasis import DWAM, DWAMConfig
from .checkpoint import _resolve, load_actor
from .degrade import NAV_ONLY
from .envs import make_env
from .evaluate import evaluate
from .sweep_report import (
    _layer_mean,
    draws_markdown,
    load_sweep,
    markdown_table,
    summarize,
    write_report,
)

__all__ = ["degradation_grid", "calibrated_dwam", "dwam_config_for", "run_sweep",
           "write_report", "load_sweep", "summarize", "check_seeds", "TEST_SEED", "VALIDATION_SEED",
           "DRAWS", "markdown_table", "draws_markdown", "DrawRecord"]

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
              persist: bool = False, record=None, resume: bool = False) -> dict:
    """Evaluate the checkpoint ``run`` on :func:`degradation_grid` (or ``conditions``) with
    and without DWAM, on test env seeds ``seed + e`` (:func:`check_seeds`). Weight
    degradations are drawn ``repeats`` times (degradation seeds ``0..repeats-1``), each
    evaluated on ``episodes`` episodes; ``persist``: DWAM is reset once per draw, not every
    episode (the deployed regime). ``record``: a JSON-lines file to which every finished draw
    is appended (started afresh unless ``resume``); with ``resume`` the draws it already holds
    are read back instead of run again, so a stopped sweep continues where it stopped and
    ends with the same result (:class:`DrawRecord`). Returns ``{"env_id", "dwam_config",
    "rows": [...], "episodes": [...]}``; each row keeps its per-draw means in ``row["draws"]``."""
    import torch

    check_seeds(seed, episodes, "test")
    torch.set_num_threads(1)
    actor, cfg = load_actor(run)
    env_id = cfg["env_id"]
    env_fn = functools.partial(make_env, env_id, **cfg.get("env_kwargs", {}))
    dcfg = dwam_config or dwam_config_for(cfg)
    env_fn().close()  # a missing simulator (mujoco) fails here, before any output
    dwam = calibrated_dwam(actor, run, env_fn, dcfg)
    healthy = dwam.healthy_rates()
    grid = conditions if conditions is not None else degradation_grid(env_id, full)
    model_id = str(cfg.get("seed", 0))
    log = None if record is None else DrawRecord(record, dict(
        env_id=env_id, weights=_digest(actor.state_dict()),
        calibration=_digest(dwam.calibration_dict()), dwam=dwam.config_dict(),
        episodes=episodes, seed=seed, persist=persist, max_steps=max_steps,
        model_id=model_id), resume)
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
                key = f"{cond[0]}:{cond[1]:g}" if cond else "healthy", int(arm), r
                res = None if log is None else log.get(key)
                if res is None:
                    res = evaluate(actor, env_fn, episodes, seed=seed, degradation=cond,
                                   dwam=dwam if arm else None, degradation_seed=r,
                                   model_id=model_id, healthy_rates=healthy,
                                   max_steps=max_steps, reset_each_episode=not persist)
                    if log is not None:
                        log.add(key, res)
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


def _digest(tensors: dict) -> str:
    """SHA-256 over the names and bytes of a state dict (which weights a draw was run on)."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class DrawRecord:
    """The finished draws of one sweep, one JSON line each: ``{"settings", "key", "res"}``
    (``key`` = condition, DWAM arm, draw; ``res`` = :func:`evaluate`'s result). A line that
    does not parse (a write cut off when the sweep was killed) is ignored, so that draw is run
    again. Resuming a record written with other ``settings`` (checkpoint weights, calibration,
    DWAM config, episodes, seeds, ``persist``, ``max_steps``) is a ``ValueError`` naming them."""

    def __init__(self, path, settings: dict, resume: bool):
        from pathlib import Path

        self.path, self.settings, self.done = Path(path), settings, {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not (resume and self.path.is_file()):
            self.path.write_text("")
            return
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
                key, res, old = tuple(entry["key"]), entry["res"], entry["settings"]
            except (ValueError, KeyError, TypeError):
                continue
            if old != settings:
                diff = sorted(k for k in settings.keys() | old.keys()
                              if old.get(k) != settings.get(k))
                raise ValueError(f"{self.path} holds draws of a sweep with other settings "
                                 f"(differing: {', '.join(diff)}); remove it, choose another "
                                 "--out, or run without --resume")
            self.done[key] = res

    def get(self, key: tuple):
        """The recorded result of draw ``key``, or ``None``."""
        return self.done.get(key)

    def add(self, key: tuple, res: dict) -> None:
        """Append one finished draw (written and flushed at once)."""
        with self.path.open("a") as f:
            f.write(json.dumps({"settings": self.settings, "key": list(key), "res": res})
                    + "\n")


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
