"""``membra control train|eval|sweep|tune``: spiking controllers and DWAM under degradation."""

from __future__ import annotations

import typer

from . import app

control_app = typer.Typer(help="Spiking controllers (PopSAN + TD3) and DWAM homeostasis.\n\n"
                               "Examples:\n\n  membra control train --env Pendulum-v1 --steps "
                               "15000 --seed 0\n\n  membra control eval pendulum --degrade "
                               "weight_gn:0.05 --dwam on\n\n  membra control sweep pendulum",
                          no_args_is_help=True)
app.add_typer(control_app, name="control")


def _hidden(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(h) for h in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"--hidden must be comma-separated ints, got {text!r}") from None


@control_app.command()
def train(env: str = typer.Option("Pendulum-v1", help="gymnasium id, e.g. Pendulum-v1, "
                                  "membra/LidarNav2D-v0, HalfCheetah-v5"),
          steps: int = typer.Option(15_000, min=1, help="environment steps"),
          seed: int = typer.Option(0),
          out: str = typer.Option(None, help="checkpoint directory (default runs/<env>-s<seed>)"),
          start_steps: int = typer.Option(None, help="random steps first (default: 2000 for "
                                          "runs under 50k steps, else 10000)"),
          hidden: str = typer.Option("256,256", help="spiking hidden widths"),
          neuron: str = typer.Option("lif", help="spiking neuron of the actor: lif (PopSAN's "
                                     "static threshold) or bdett (homeostatic dynamic "
                                     "threshold, see docs/homeostasis.md)"),
          eval_every: int = typer.Option(5000, min=1),
          utd: float = typer.Option(1.0, min=0.0, help="TD3 updates per environment step"),
          time_limit: float = typer.Option(None, "--time-limit", min=1.0,
                                           help="stop after this many seconds (a final "
                                           "evaluation is run, the best actor is kept)"),
          threads: int = typer.Option(1, min=1, help="torch CPU threads")) -> None:
    """Train a PopSAN actor with TD3; writes actor.safetensors + config.json (best validation
    return).

    Example: membra control train --env Pendulum-v1 --steps 500 --eval-every 250
    """
    import torch

    from ..control import TD3Config, train_td3

    torch.set_num_threads(threads)
    out = out or f"runs/{env.replace('/', '_')}-s{seed}"
    cfg = TD3Config(start_steps=start_steps if start_steps is not None else
                    (2000 if steps < 50_000 else 10_000), eval_every=eval_every, utd=utd)
    try:
        _, info = train_td3(env, steps, seed=seed, out=out, config=cfg,
                            actor_kwargs={"hidden": _hidden(hidden), "neuron": neuron},
                            log=typer.echo,
                            time_limit_s=time_limit)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(f"best validation return {info['best_eval_return']:.1f} after "
               f"{info['train_wall_s']:.0f} s -> {out}")


def _dwam_overrides(eta, zeta, rho, a_theta=None):
    return {"eta": eta, "zeta": zeta, "rho": rho, "a_theta": a_theta}


_A_THETA_HELP = "EMA rate of the BCM threshold theta_M (default 0.1, ~10 control steps)"


def _echo_err(msg: str) -> None:
    typer.echo(msg, err=True)


@control_app.command("eval")
def eval_(run: str = typer.Argument(..., help="checkpoint directory or shipped name "
                                    "(pendulum, lidarnav, halfcheetah, pendulum_bdett, "
                                    "lidarnav_bdett; shipped:NAME when a local folder has "
                                    "that name)"),
          degrade: str = typer.Option("healthy", help="e.g. weight_gn:0.05, weight_zero:0.3, "
                                      "obs_gn:0.1, quantize:255, lidar_gn:0.1, dynamic"),
          dwam: str = typer.Option("off", help="on | off | both (both arms on the same "
                                   "seeds and damaged weights, plus the healthy return, and "
                                   "the fraction of the lost return DWAM recovers)"),
          episodes: int = typer.Option(10, min=1, help="episodes per draw"),
          repeats: int = typer.Option(1, min=1, help="degradation draws (seeds "
                                      "degradation-seed, degradation-seed + 1, ...); "
                                      "results are means over draws with a 95 % bootstrap CI"),
          seed: int = typer.Option(1000, help="first env seed (test seeds: 1000-1999)"),
          degradation_seed: int = typer.Option(0, help="seed of the first degradation draw "
                                               "(which weights are damaged, the noise "
                                               "sequence); the same seed gives the same "
                                               "damage with and without DWAM"),
          persist: bool = typer.Option(False, "--persist", help="deployed regime: DWAM is "
                                       "not reset between episodes"),
          guard_k: int = typer.Option(None, min=0, help="rollback guard after this many "
                                      "steps of growing rate deviation (default 20 with "
                                      "--persist, else 0 = off)"),
          eta: float = typer.Option(None, help="override the DWAM learning rate"),
          zeta: float = typer.Option(None, help="CV gain: k = zeta * CV of the neuron's rate "
                                     "(0 switches DWAM off exactly)"),
          rho: float = typer.Option(None, help="drift bound: |W - W_ref| <= rho * mean|W_ref| "
                                    "per weight"),
          a_theta: float = typer.Option(None, help=_A_THETA_HELP),
          progress: bool = typer.Option(True, help="one progress line per draw on stderr")
          ) -> None:
    """Evaluate a controller: mean return (95 % CI over draws when --repeats > 1), success
    rate (navigation), per-layer firing statistics (rate, rate CV, rate deviation).

    Example: membra control eval pendulum --degrade weight_zero:0.3 --dwam both --repeats 3
    """
    import functools

    import numpy as np
    import torch

    from ..control import evaluate, load_actor, make_env
    from ..control.degrade import parse_degradation
    from ..control.stats import bootstrap_ci, recovered_fraction
    from ..control.sweep import calibrated_dwam, dwam_config_for

    if dwam not in ("on", "off", "both"):
        raise typer.BadParameter(f"--dwam must be 'on', 'off' or 'both', got {dwam!r}")
    try:
        actor, cfg = load_actor(run)
        deg = parse_degradation(degrade, cfg["env_id"])
        gk = guard_k if guard_k is not None else (20 if persist else 0)
        dwam_cfg = dwam_config_for(cfg, persist, **_dwam_overrides(eta, zeta, rho, a_theta),
                                   guard_k=gk)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from None
    torch.set_num_threads(1)
    env_fn = functools.partial(make_env, cfg["env_id"], **cfg.get("env_kwargs", {}))
    adapter = calibrated_dwam(actor, run, env_fn, dwam_cfg)
    arms = {"off": [False], "on": [True], "both": [False, True]}[dwam]
    draws = repeats if deg is not None else 1

    def one(arm, d, cond):
        return evaluate(actor, env_fn, episodes, seed=seed, degradation=cond,
                        dwam=adapter if arm else None, degradation_seed=degradation_seed + d,
                        model_id=str(cfg.get("seed", 0)), healthy_rates=adapter.healthy_rates(),
                        reset_each_episode=not persist)

    healthy = None
    if dwam == "both" and deg is not None:
        healthy = one(False, 0, None)["mean"]
        if progress:
            _echo_err(f"healthy (no DWAM): {healthy:.1f}")
    res = {arm: [] for arm in arms}
    for d in range(draws):
        for arm in arms:
            res[arm].append(one(arm, d, deg))
        if progress:
            _echo_err(f"draw {d + 1}/{draws}: " + ", ".join(
                f"DWAM {'on' if a else 'off'} {res[a][-1]['mean']:.1f}" for a in arms))
    for arm in arms:
        means = np.array([r["mean"] for r in res[arm]])
        ci = bootstrap_ci(means) if draws > 1 else None
        typer.echo(f"{cfg['env_id']}  {degrade}  DWAM {'on' if arm else 'off'}: return "
                   f"{means.mean():.1f}" + (f" [95% CI {ci[0]:.1f}, {ci[1]:.1f}] over {draws} "
                                            f"draws x {episodes} episodes" if ci else
                                            f" ± {res[arm][0]['std']:.1f} over {episodes} "
                                            "episodes"))
        for k in ("success_rate", "collision_rate", "timeout_rate"):
            if k in res[arm][0]:
                typer.echo(f"  {k}: {np.mean([r[k] for r in res[arm]]):.0%}")
        for name in res[arm][0]["layers"]:
            st = {k: np.mean([r["layers"][name][k] for r in res[arm]])
                  for k in res[arm][0]["layers"][name]}
            typer.echo(f"  {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in st.items()))
    if healthy is not None:
        off = np.array([r["mean"] for r in res[False]])
        on = np.array([r["mean"] for r in res[True]])
        rec = recovered_fraction(off, on, healthy)
        typer.echo(f"healthy {healthy:.1f}; recovered fraction of the lost return: " +
                   ("n/a (no draw loses)" if not np.isfinite(rec) else f"{rec:+.0%}"))


def _command_line(ctx: typer.Context) -> str:
    """The running ``membra control ...`` command with the options the user set (for
    reports: every figure names the command that produced it)."""
    import shlex

    words = ["membra", "control", ctx.info_name]
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if getattr(ctx.get_parameter_source(p.name), "name", None) != "COMMANDLINE":
            continue
        if not p.opts[0].startswith("-"):
            words.append(str(v))
        elif p.is_flag:
            words.append(p.opts[0] if v else (p.secondary_opts or [p.opts[0]])[0])
        else:
            words += [p.opts[0], str(v)]
    return shlex.join(words)


def _conditions(text, env_id):
    """``"healthy,weight_gn:0.05"`` -> ``[None, ("weight_gn", 0.05)]`` (checked)."""
    from ..control.degrade import parse_degradation

    if text is None:
        return None
    return [parse_degradation(c.strip(), env_id) for c in text.split(",") if c.strip()]


@control_app.command()
def sweep(ctx: typer.Context,
          run: str = typer.Argument(..., help="checkpoint directory or shipped name"),
          out: str = typer.Option(None, help="report directory (default RUN/sweep; "
                                  "runs/sweep-NAME for a shipped controller)"),
          episodes: int = typer.Option(10, min=1, help="episodes per condition and draw "
                                       "(test env seeds 1000+e)"),
          full: bool = typer.Option(False, "--full", help="every severity of the grid (default: "
                                    "the default severity of each degradation)"),
          conditions: str = typer.Option(None, help="comma-separated conditions instead of "
                                         "the grid, e.g. healthy,weight_gn:0.05"),
          repeats: int = typer.Option(12, min=1, help="draws of each random weight "
                                      "degradation (weight_gn, weight_zero); CIs are over "
                                      "draws"),
          persist: bool = typer.Option(False, "--persist", help="deployed regime: DWAM is "
                                       "reset once per draw and its adaptation carries over "
                                       "from episode to episode"),
          guard_k: int = typer.Option(None, min=0, help="stability guard: roll back to the "
                                      "last good weights when the rate deviation grows this "
                                      "many control steps in a row (0 = off; default 20 with "
                                      "--persist, else 0)"),
          eta: float = typer.Option(None, help="DWAM learning rate (default: the "
                                    "controller's tuned eta)"),
          zeta: float = typer.Option(None, help="CV gain of DWAM (k = zeta * CV; 0 = off)"),
          rho: float = typer.Option(None, help="drift bound per weight, in units of the "
                                    "layer's mean |W|"),
          a_theta: float = typer.Option(None, help=_A_THETA_HELP),
          resume: bool = typer.Option(False, "--resume", help="continue a stopped sweep: "
                                      "reuse the finished draws recorded in OUT/draws.jsonl "
                                      "(same settings only)"),
          progress: bool = typer.Option(True, help="progress bar on stderr")) -> None:
    """Run the degradation grid with and without DWAM -> sweep.md (95 % bootstrap CIs over
    draws, per-draw tables, rate CV), sweep.json, episodes.csv, returns.png, firing.png.

    Example: membra control sweep pendulum --conditions healthy,weight_gn:0.05 --repeats 2
    """
    from pathlib import Path

    from ..control.checkpoint import _resolve, is_shipped, load_config
    from ..control.sweep import dwam_config_for, run_sweep, write_report

    try:
        cfg = load_config(run)
        conds = _conditions(conditions, cfg["env_id"])
        gk = guard_k if guard_k is not None else (20 if persist else 0)
        dwam_cfg = dwam_config_for(cfg, persist, **_dwam_overrides(eta, zeta, rho, a_theta),
                                   guard_k=gk)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e)) from None
    if out is None:  # a shipped controller's report goes to the working directory
        where = _resolve(run)
        out = Path(f"runs/sweep-{where.name}") if is_shipped(where) else where / "sweep"
    res = run_sweep(run, episodes=episodes, full=full, repeats=repeats, dwam_config=dwam_cfg,
                    conditions=conds, persist=persist, progress=progress,
                    record=Path(out) / "draws.jsonl", resume=resume)
    path = write_report(res, out, command=_command_line(ctx))
    typer.echo((path / "sweep.md").read_text().split("![returns]")[0])
    typer.echo(f"report -> {path}")


@control_app.command()
def tune(run: str = typer.Argument(..., help="checkpoint directory (a shipped controller "
                                   "is tuned but never written to)"),
         etas: str = typer.Option("1e-4,3e-4,1e-3,3e-3", help="learning rates to try"),
         episodes: int = typer.Option(5, min=1, help="episodes per draw (validation env "
                                      "seeds 2000+e)"),
         repeats: int = typer.Option(1, min=1, help="degradation draws per condition"),
         persist: bool = typer.Option(False, "--persist", help="tune for the deployed "
                                      "regime (DWAM not reset between episodes)"),
         guard_k: int = typer.Option(None, min=0, help="rollback guard (default 20 with "
                                     "--persist, else 0)"),
         save: bool = typer.Option(True, help="store the chosen eta in RUN/config.json")
         ) -> None:
    """Choose DWAM's eta on validation seeds (2000+e, never the test seeds): the eta with the
    best mean return over weight_gn 0.05 and weight_zero 0.3 whose healthy return drops by
    at most 5%.

    Example: membra control tune runs/Pendulum-v1-s0 --etas 3e-5,1e-4 --episodes 2
    """
    import functools

    import numpy as np
    import torch

    from ..control import evaluate, load_actor, make_env
    from ..control.checkpoint import _resolve, is_shipped, update_config
    from ..control.sweep import VALIDATION_SEED, calibrated_dwam, check_seeds, dwam_config_for

    try:
        actor, cfg = load_actor(run)
        eta_list = [float(e) for e in etas.split(",")]
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    check_seeds(VALIDATION_SEED, episodes, "validation")
    shipped = is_shipped(_resolve(run))
    torch.set_num_threads(1)
    env_fn = functools.partial(make_env, cfg["env_id"], **cfg.get("env_kwargs", {}))
    conds = [None, ("weight_gn", 0.05), ("weight_zero", 0.3)]
    gk = guard_k if guard_k is not None else (20 if persist else 0)

    def score(adapter):
        return [float(np.mean([evaluate(actor, env_fn, episodes, seed=VALIDATION_SEED,
                                        degradation=c, dwam=adapter, model_id="val",
                                        degradation_seed=d,
                                        reset_each_episode=not persist)["mean"]
                               for d in range(repeats if c else 1)])) for c in conds]

    base = score(None)
    typer.echo(f"no DWAM: healthy {base[0]:.1f}, degraded {base[1]:.1f} / {base[2]:.1f}")
    results, best = [], None
    for eta in eta_list:
        adapter = calibrated_dwam(actor, run, env_fn, dwam_config_for(cfg, persist, eta=eta,
                                                                      guard_k=gk))
        s = score(adapter)
        ok = s[0] >= base[0] - 0.05 * abs(base[0])
        results.append({"eta": eta, "healthy": s[0], "weight_gn": s[1], "weight_zero": s[2],
                        "healthy_ok": ok})
        typer.echo(f"eta {eta:g}: healthy {s[0]:.1f}, degraded {s[1]:.1f} / {s[2]:.1f}"
                   f"{'' if ok else '  (healthy loss > 5%)'}")
        if ok and (best is None or s[1] + s[2] > best[1]):
            best = (eta, s[1] + s[2])
    chosen = best[0] if best else min(eta_list)
    typer.echo(f"chosen eta {chosen:g}")
    if save and shipped:
        typer.echo(f"not saved: {run} is a shipped controller (read-only); pass --eta "
                   f"{chosen:g} to eval/sweep, or copy its folder and tune the copy")
    elif save:
        dw = cfg.get("dwam", {})
        key = "persist" if persist else "config"
        dw.setdefault(key, {})["eta"] = chosen
        if persist:
            dw["persist"]["guard_k"] = gk
        dw["tuning_persist" if persist else "tuning"] = {
            "validation_seed": VALIDATION_SEED, "episodes": episodes, "repeats": repeats,
            "no_dwam": dict(zip(("healthy", "weight_gn", "weight_zero"), base, strict=True)),
            "results": results}
        update_config(run, dwam=dw)
