"""Diagnosis of DWAM's recovery on VALIDATION seeds (env seeds 2000+e, degradation draws of
their own, model_id "val"): which arm recovers how much of the lost return.

Arms: no DWAM; DWAM as shipped; DWAM on the hidden layers only / on the output layer only;
DWAM with a slower / faster BCM threshold (a_theta = 0.01 / 0.3; default 0.1); the
mean-current oracle
(membra.control.diagnose: each neuron's mean input current restored by a bias, knowing the
healthy weights). `--currents ETAS`: how far DWAM moves the mean currents, and in which
direction (membra.control.diagnose.current_shift).

    PYTHONPATH=src python reports/homeostasis/diagnose.py pendulum --draws 6 --episodes 2 \
        --out reports/homeostasis/diagnosis
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch

from membra.control.checkpoint import load_actor
from membra.control.degrade import apply_degradation, derive_seed
from membra.control.diagnose import current_shift, mean_current_oracle, presynaptic_rates
from membra.control.envs import make_env
from membra.control.evaluate import evaluate, run_episode
from membra.control.stats import recovered_ci, recovered_fraction
from membra.control.sweep import VALIDATION_SEED, calibrated_dwam, check_seeds, dwam_config_for
from membra.homeostasis import DWAM
from membra.homeostasis.recorder import copy_without_rate_hooks

CONDITIONS = (("weight_gn", 0.05), ("weight_zero", 0.3))


def _adapter(actor, base: DWAM, layers=None, **cfg) -> DWAM:
    """A DWAM on ``actor`` with ``base``'s calibration, on ``layers`` (None: all), config
    ``base.config`` with ``cfg`` replaced."""
    dw = DWAM(actor, dataclasses.replace(base.config, **cfg), layers=layers)
    dw.load_state_dict({k: v for k, v in base.calibration_dict().items()
                        if k.rsplit(".", 1)[0] in dw.layers})
    return dw


def currents(actor, env_fn, base, pre, draws: int, episodes: int, etas, max_steps=None):
    """Per condition, eta and layer: how far DWAM moved the mean input currents towards the
    healthy ones (:func:`current_shift`) after ``episodes`` episodes without reset, mean over
    ``draws`` validation draws. Returns markdown lines."""
    acc: dict = {}
    for name, sev in CONDITIONS:
        for d in range(draws):
            dmg, _ = apply_degradation(actor, env_fn, (name, sev),
                                       derive_seed(d, name, sev, "val"))
            for eta in etas:
                m = copy_without_rate_hooks(dmg).eval()
                dw = _adapter(m, base, eta=eta)
                dw.reset()
                env = env_fn()
                with dw.active():
                    for e in range(episodes):
                        run_episode(m, env, VALIDATION_SEED + e, max_steps=max_steps)
                env.close()
                for layer, v in current_shift(actor, dmg, m, pre).items():
                    acc.setdefault((name, eta, layer), []).append(v)
    lines = ["| condition | eta | layer | needed shift ||(W - W~) c|| | achieved / needed | "
             "cos(achieved, needed) |", "|---|---|---|---|---|---|"]
    for (name, eta, layer), vs in acc.items():
        f = {k: np.mean([v[k] for v in vs]) for k in vs[0]}
        lines.append(f"| {name} | {eta:g} | {layer} | {f['needed']:.3f} | {f['ratio']:.3f} | "
                     f"{f['cos']:+.3f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--draws", type=int, default=6)
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--arms", default="off,dwam,hidden,output,slow_theta,oracle")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-steps", type=int, default=None, help="cut episodes (smoke tests)")
    ap.add_argument("--currents", default="", help="etas for the mean-current table, e.g. "
                    "1e-4,1e-3 (episodes without reset: --episodes)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    check_seeds(VALIDATION_SEED, a.episodes, "validation")
    actor, cfg = load_actor(a.run)
    env_fn = functools.partial(make_env, cfg["env_id"], **cfg.get("env_kwargs", {}))
    base = calibrated_dwam(actor, a.run, env_fn, dwam_config_for(cfg))
    names = list(base.layers)
    pre = presynaptic_rates(actor, env_fn, 3, seed=0)  # calibration seeds, healthy
    if a.currents:
        lines = [f"# DWAM mean-current shift on validation seeds: {a.run}", "",
                 "Produced by: `PYTHONPATH=src python reports/homeostasis/diagnose.py "
                 f"{a.run} --draws {a.draws} --episodes {a.episodes} --currents {a.currents} "
                 f"--out {a.out}`", "",
                 f"{a.draws} validation draws, {a.episodes} episode(s) from env seed "
                 f"{VALIDATION_SEED} without reset; `c` = healthy presynaptic rates "
                 "(calibration seeds 0-2).", ""]
        lines += currents(actor, env_fn, base, pre, a.draws, a.episodes,
                          [float(x) for x in a.currents.split(",")], a.max_steps)
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "currents.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    ev = functools.partial(evaluate, env_fn=env_fn, episodes=a.episodes, seed=VALIDATION_SEED,
                           max_steps=a.max_steps)
    t0 = time.time()
    healthy = float(ev(actor)["mean"])
    arms = {  # adapters on the healthy actor, as in a sweep (evaluate copies and damages it)
        "off": lambda: None,
        "dwam": lambda: base,
        "hidden": lambda: _adapter(actor, base, layers=names[:-1]),
        "output": lambda: _adapter(actor, base, layers=names[-1:]),
        "slow_theta": lambda: _adapter(actor, base, a_theta=0.01),
        "fast_theta": lambda: _adapter(actor, base, a_theta=0.3),
        "oracle": lambda: "oracle",
    }
    arms = {k: arms[k]() for k in a.arms.split(",")}
    res = {"run": a.run, "draws": a.draws, "episodes": a.episodes, "healthy": healthy,
           "arms": {}}
    for arm, make in arms.items():
        res["arms"][arm] = {"healthy": healthy if isinstance(make, str) or make is None
                            else float(ev(actor, dwam=make)["mean"])}
        for name, sev in CONDITIONS:
            means = []
            for d in range(a.draws):
                seed = derive_seed(d, name, sev, "val")
                dmg, _ = apply_degradation(actor, env_fn, (name, sev), seed)
                if isinstance(make, str):
                    r = ev(mean_current_oracle(actor, dmg, pre))
                else:
                    r = ev(dmg, dwam=make)
                means.append(float(r["mean"]))
            res["arms"][arm][name] = means
            print(f"{arm:>10} {name:>11} {np.mean(means):8.1f} ({time.time() - t0:.0f} s)",
                  flush=True)
    off = res["arms"].get("off")
    lines = [f"# DWAM diagnosis on validation seeds: {a.run}", "",
             "Produced by: `PYTHONPATH=src python reports/homeostasis/diagnose.py "
             f"{a.run} --draws {a.draws} --episodes {a.episodes} --arms {a.arms} "
             f"--out {a.out}" + (f" --max-steps {a.max_steps}" if a.max_steps else "") + "`",
             "",
             f"Env seeds {VALIDATION_SEED}..{VALIDATION_SEED + a.episodes - 1}, {a.draws} "
             "validation degradation draws per condition (model_id `val`, never the test "
             f"draws). Healthy return {healthy:.1f}. Recovered = sum over losing draws of "
             "(arm - no DWAM) / sum of (healthy - no DWAM), 95 % bootstrap CI over draws.", "",
             "| arm | healthy | " + " | ".join(f"{n} {s:g}: return / recovered [95% CI]"
                                     for n, s in CONDITIONS) + " |",
             "|---|---|" + "---|" * len(CONDITIONS)]
    for arm, by in res["arms"].items():
        cells = []
        for name, _ in CONDITIONS:
            x = np.asarray(by[name])  # per-draw means
            if off is None or arm == "off":
                cells.append(f"{x.mean():.1f}")
                continue
            o = np.asarray(off[name])
            rec, ci = recovered_fraction(o, x, healthy), recovered_ci(o, x, healthy)
            cells.append(f"{x.mean():.1f} / {rec:+.0%} [{ci[0]:+.0%}, {ci[1]:+.0%}]"
                         if np.isfinite(rec) else f"{x.mean():.1f} / n/a (no loss)")
        lines.append(f"| {arm} | {by['healthy']:.1f} | " + " | ".join(cells) + " |")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "diagnosis.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "diagnosis.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
