"""Evaluation of spiking controllers: returns, navigation outcomes, firing statistics."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["rollout_returns", "run_episode", "evaluate"]


@torch.no_grad()
def run_episode(actor, env, seed: int, on_step=None, max_steps: int | None = None):
    """Run one episode with the deterministic policy; returns ``(return, length, info)``.
    ``on_step()`` is called after each control step (e.g. a rate recorder)."""
    obs, _ = env.reset(seed=seed)
    ret, n, info = 0.0, 0, {}
    while True:
        a = actor.act(obs)
        obs, r, term, trunc, info = env.step(a)
        ret += float(r)
        n += 1
        if on_step is not None:
            on_step()
        if term or trunc or (max_steps is not None and n >= max_steps):
            return ret, n, info


def rollout_returns(actor, env_fn, episodes: int, seed: int = 1000) -> list[float]:
    """Returns of ``episodes`` episodes, env seeds ``seed + e``."""
    was = actor.training
    actor.eval()
    env = env_fn()
    try:
        return [run_episode(actor, env, seed + e)[0] for e in range(episodes)]
    finally:
        env.close()
        actor.train(was)


def temporal_cv(r: torch.Tensor) -> torch.Tensor:
    """``std / mean`` over the first (time) dimension of ``r`` (population std, no Bessel
    correction); 0 where the mean is 0 (a silent series does not fluctuate)."""
    mean = r.mean(0)
    cv = r.std(0, unbiased=False) / mean.clamp_min(1e-12)
    return torch.where(mean > 0, cv, torch.zeros_like(cv))


def _layer_stats(hist: list[torch.Tensor], healthy) -> dict[str, float]:
    """Firing statistics of one layer over one episode from per-step rates ``r[t, i]``:
    ``cv`` = mean over neurons of each neuron's temporal CV; ``pop_cv`` = temporal CV of the
    layer's population rate ``mean_i r[t, i]`` (how much the layer's overall firing rate
    fluctuates from control step to control step); ``rate_std`` = mean over neurons of each
    neuron's temporal std (the CV's numerator)."""
    r = torch.stack(hist).double()
    mean_i = r.mean(0)
    out = {"mean_rate": float(mean_i.mean()), "cv": float(temporal_cv(r).mean()),
           "pop_cv": float(temporal_cv(r.mean(1))),
           "rate_std": float(r.std(0, unbiased=False).mean()),
           "silent_frac": float((mean_i == 0).double().mean()),
           "saturated_frac": float((mean_i == 1).double().mean())}
    if healthy is not None:
        out["rate_dev"] = float((mean_i - torch.as_tensor(healthy).double()).abs().mean())
    return out


def evaluate(actor, env_fn, episodes: int = 10, seed: int = 1000, degradation=None,
             dwam=None, *, degradation_seed: int = 0, model_id: str = "",
             reset_each_episode: bool = True, healthy_rates: dict | None = None,
             calibration_episodes: int = 3, calibration_seed: int = 0,
             max_steps: int | None = None) -> dict:
    """Evaluate ``actor`` for ``episodes`` episodes (env seeds ``seed + e``).

    Args:
        actor: a :class:`PopSANActor` (never modified; a copy is degraded/adapted).
        env_fn: ``env_fn(**kwargs) -> env`` (e.g. ``functools.partial(make_env, env_id)``).
        degradation: ``None``, ``(name, severity)`` or a string like ``"weight_gn:0.05"``
            (:mod:`membra.control.degrade`); seeded by
            ``derive_seed(degradation_seed, name, severity, model_id)``.
        dwam: ``None`` (off), a :class:`~membra.homeostasis.DWAMConfig` (calibrated here on the
            healthy actor, env seeds ``calibration_seed + e``) or a calibrated
            :class:`~membra.homeostasis.DWAM` on the healthy actor (its calibration, config and
            adapted layers are used).
        reset_each_episode: reset DWAM (weights and statistics) at every episode start;
            ``False`` is the deployed regime: the adaptation carries over from episode to
            episode (one reset before the first).
        healthy_rates: ``{layer: rates}`` reference for ``rate_dev`` when ``dwam`` is None.

    Returns a dict: ``returns``, ``mean``, ``std``, ``lengths``, ``outcomes`` (navigation:
    ``success_rate``, ``collision_rate``, ``timeout_rate``), ``layers`` (per layer, averaged
    over episodes: ``mean_rate``, ``cv``, ``rate_dev``, ``silent_frac``, ``saturated_frac``,
    ``drift``) and ``episodes`` (one row per episode).
    """
    from ..homeostasis import DWAM, DWAMConfig, RateRecorder
    from ..homeostasis.recorder import copy_without_rate_hooks
    from .degrade import apply_degradation, derive_seed, parse_degradation

    if not isinstance(episodes, int) or episodes <= 0:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    if isinstance(degradation, str):
        degradation = parse_degradation(degradation)
    calib, layers = None, None
    if isinstance(dwam, DWAMConfig):
        cal = DWAM(actor, dwam)
        cal.calibrate(env_fn, calibration_episodes, seed=calibration_seed, max_steps=max_steps)
        calib, cfg = cal.calibration_dict(), dwam
        cal.remove()
    elif isinstance(dwam, DWAM):
        calib, cfg, layers = dwam.calibration_dict(), dwam.config, list(dwam.layers)
    elif dwam is not None:
        raise TypeError(f"dwam must be None, a DWAMConfig or a DWAM, got {type(dwam).__name__}")
    if calib is not None and healthy_rates is None:
        healthy_rates = {k[:-len(".healthy_rate")]: v for k, v in calib.items()
                         if k.endswith(".healthy_rate")}

    model = copy_without_rate_hooks(actor).eval()
    dseed = derive_seed(degradation_seed, *degradation, model_id) if degradation else 0
    model, env_fn_d = apply_degradation(model, env_fn, degradation, dseed)
    adapter = None
    if calib is not None:
        adapter = DWAM(model, cfg, layers=layers)
        adapter.load_state_dict(calib)
    rec = RateRecorder(model, list(adapter.layers) if adapter else None, history=True)
    env = env_fn_d()
    rows = []
    try:
        for e in range(episodes):
            rec.clear()
            if adapter is not None and (reset_each_episode or e == 0):
                adapter.reset()
            ctx = adapter.active() if adapter is not None else _null()
            with ctx:
                ret, n, info = run_episode(model, env, seed + e, on_step=rec.pop,
                                           max_steps=max_steps)
            row = {"episode": e, "env_seed": seed + e, "return": ret, "length": n,
                   "outcome": info.get("outcome")}
            if adapter is not None and cfg.guard_k:
                row["rollbacks"] = adapter.rollbacks  # cumulative since the last reset
            stats = adapter.stats() if adapter is not None else None
            for name, hist in rec.history.items():
                ls = _layer_stats(hist, None if healthy_rates is None
                                  else healthy_rates.get(name))
                ls["drift"] = stats[name]["drift"] if stats else 0.0
                row.update({f"{name}/{k}": v for k, v in ls.items()})
            rows.append(row)
    finally:
        env.close()
        rec.remove()
    returns = [r["return"] for r in rows]
    out = {"returns": returns, "mean": float(np.mean(returns)), "std": float(np.std(returns)),
           "lengths": [r["length"] for r in rows], "episodes": rows,
           "degradation": degradation, "dwam": adapter is not None}
    outcomes = [r["outcome"] for r in rows]
    if any(o is not None for o in outcomes):
        for k in ("success", "collision", "timeout"):
            out[f"{k}_rate"] = outcomes.count(k) / len(outcomes)
    keys = sorted({k for r in rows for k in r if "/" in k})
    layers: dict[str, dict] = {}
    for k in keys:
        name, stat = k.rsplit("/", 1)
        layers.setdefault(name, {})[stat] = float(np.mean([r[k] for r in rows]))
    out["layers"] = layers
    return out


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False
