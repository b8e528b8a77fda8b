r"""TD3 (Fujimoto et al., 2018) with a spiking PopSAN actor and a standard MLP critic.

Critic targets :math:`y = r + \gamma (1-d) \min_{k=1,2} Q'_k(s', \mathrm{clip}(\pi'(s') +
\mathrm{clip}(\epsilon, -c, c)))`, :math:`\epsilon \sim N(0, \sigma_{tgt}^2)` scaled by the
action half-range; the actor maximises :math:`Q_1(s, \pi(s))` every ``policy_delay`` critic
updates; targets follow by Polyak averaging. Observations are stored raw in the replay buffer
and z-scored with the actor's running :class:`~membra.control.ObsNormalizer` at sample time.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .actor import PopSANActor
from .checkpoint import save_actor
from .envs import make_env

__all__ = ["TD3Config", "ReplayBuffer", "Critic", "train_td3"]


@dataclass
class TD3Config:
    """TD3 settings (PopSAN defaults; ``start_steps`` 10k for MuJoCo, 2k for CI).

    Every ``update_every`` environment steps, ``round(utd * update_every)`` gradient updates
    are made (``utd`` = updates per environment step; PopSAN uses 1)."""

    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    batch: int = 100
    gamma: float = 0.99
    polyak: float = 0.995
    policy_delay: int = 2
    target_noise: float = 0.2
    noise_clip: float = 0.5
    expl_noise: float = 0.1
    start_steps: int = 10_000
    update_every: int = 50
    utd: float = 1.0
    buffer_size: int = 1_000_000
    critic_hidden: tuple[int, ...] = (256, 256)
    eval_every: int = 5_000
    eval_episodes: int = 5


class ReplayBuffer:
    """Fixed-size ring buffer of raw transitions (numpy, float32)."""

    def __init__(self, obs_dim: int, act_dim: int, size: int):
        self.obs = np.zeros((size, obs_dim), np.float32)
        self.next_obs = np.zeros((size, obs_dim), np.float32)
        self.act = np.zeros((size, act_dim), np.float32)
        self.rew = np.zeros(size, np.float32)
        self.done = np.zeros(size, np.float32)
        self.size, self.ptr, self.n = size, 0, 0

    def add(self, o, a, r, o2, d) -> None:
        i = self.ptr
        self.obs[i], self.act[i], self.rew[i], self.next_obs[i], self.done[i] = o, a, r, o2, d
        self.ptr = (i + 1) % self.size
        self.n = min(self.n + 1, self.size)

    def sample(self, batch: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.n, size=batch)
        return {k: torch.as_tensor(getattr(self, k)[idx])
                for k in ("obs", "act", "rew", "next_obs", "done")}


class Critic(nn.Module):
    """Two Q networks ``Q_k(s, a)``: MLPs with ReLU."""

    def __init__(self, obs_dim: int, act_dim: int, hidden=(256, 256)):
        super().__init__()

        def mlp():
            sizes, layers = (obs_dim + act_dim, *hidden), []
            for a, b in zip(sizes[:-1], sizes[1:], strict=True):
                layers += [nn.Linear(a, b), nn.ReLU()]
            return nn.Sequential(*layers, nn.Linear(sizes[-1], 1))

        self.q1, self.q2 = mlp(), mlp()

    def forward(self, obs, act):
        x = torch.cat([obs, act], -1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


def _update(actor, actor_t, critic, critic_t, opt_a, opt_c, batch, cfg, k, lo, hi, half):
    norm = actor.obs_norm
    o, o2 = norm(batch["obs"]), norm(batch["next_obs"])
    with torch.no_grad():
        a2 = actor_t(batch["next_obs"])
        eps = (torch.randn_like(a2) * cfg.target_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
        a2 = torch.max(torch.min(a2 + eps * half, hi), lo)
        q1t, q2t = critic_t(o2, a2)
        y = batch["rew"] + cfg.gamma * (1 - batch["done"]) * torch.min(q1t, q2t)
    q1, q2 = critic(o, batch["act"])
    loss_c = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
    opt_c.zero_grad(set_to_none=True)
    loss_c.backward()
    opt_c.step()
    if k % cfg.policy_delay:
        return
    for p in critic.parameters():
        p.requires_grad_(False)
    loss_a = -critic(o, actor(batch["obs"]))[0].mean()
    opt_a.zero_grad(set_to_none=True)
    loss_a.backward()
    opt_a.step()
    for p in critic.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        for net, tgt in ((actor, actor_t), (critic, critic_t)):
            for p, pt in zip(net.parameters(), tgt.parameters(), strict=True):
                pt.mul_(cfg.polyak).add_(p, alpha=1 - cfg.polyak)
            for b, bt in zip(net.buffers(), tgt.buffers(), strict=True):
                bt.copy_(b)


def train_td3(env_id: str, steps: int, seed: int = 0, out: str | Path | None = None,
              config: TD3Config | None = None, actor_kwargs: dict | None = None,
              env_kwargs: dict | None = None, progress: bool = True,
              log=print, time_limit_s: float | None = None) -> tuple[PopSANActor, dict]:
    """Train a PopSAN actor with TD3 on ``env_id`` for ``steps`` environment steps.

    Every ``config.eval_every`` steps the deterministic policy is evaluated on
    ``eval_episodes`` episodes (env seeds ``10_000 + e``, disjoint from test seeds) and, when
    ``out`` is given, the best actor so far is written there (``actor.safetensors`` +
    ``config.json``). Returns ``(best actor, info)``; ``info`` has the evaluation history,
    best return, wall time. ``time_limit_s`` stops training early (after a final evaluation)
    once that much wall time has passed.
    """
    from .evaluate import rollout_returns

    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    cfg = config or TD3Config()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = make_env(env_id, **(env_kwargs or {}))
    for what, space in (("observation", env.observation_space), ("action", env.action_space)):
        if type(space).__name__ != "Box" or len(space.shape) != 1:
            raise ValueError(f"train_td3 needs a flat continuous (Box) {what} space; {env_id} "
                             f"has {space}")
    obs_dim = env.observation_space.shape[0]
    act_dim = env.action_space.shape[0]
    lo_np, hi_np = env.action_space.low.astype(np.float32), env.action_space.high.astype(
        np.float32)
    kw = dict(actor_kwargs or {})
    actor = PopSANActor(obs_dim, act_dim, act_low=lo_np.tolist(), act_high=hi_np.tolist(), **kw)
    critic = Critic(obs_dim, act_dim, cfg.critic_hidden)
    actor_t, critic_t = copy.deepcopy(actor), copy.deepcopy(critic)
    for p in list(actor_t.parameters()) + list(critic_t.parameters()):
        p.requires_grad_(False)
    opt_a = torch.optim.Adam(actor.parameters(), lr=cfg.actor_lr)
    opt_c = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
    buf = ReplayBuffer(obs_dim, act_dim, min(cfg.buffer_size, steps))
    lo, hi = torch.as_tensor(lo_np), torch.as_tensor(hi_np)
    half = (hi - lo) / 2
    meta = {"env_id": env_id, "env_kwargs": env_kwargs or {}, "seed": seed,
            "td3": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}}
    history, best, best_state, t0 = [], -float("inf"), None, time.time()
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    ep_ret, ep_rets, n_updates = 0.0, [], 0

    bar = _progress(progress, steps, env_id)
    for t in range(1, steps + 1):
        actor.obs_norm.update(torch.as_tensor(obs).reshape(1, -1))
        if t <= cfg.start_steps:
            a = env.action_space.sample()
        else:
            with torch.no_grad():
                actor.eval()
                a = actor(torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1))[0].numpy()
            a = np.clip(a + rng.normal(0, cfg.expl_noise, act_dim) * (hi_np - lo_np) / 2,
                        lo_np, hi_np)
        o2, r, term, trunc, _ = env.step(a)
        buf.add(obs, a, r, o2, float(term))
        ep_ret += float(r)
        obs = o2
        if term or trunc:
            ep_rets.append(ep_ret)
            obs, _ = env.reset()
            ep_ret = 0.0
        if t > cfg.start_steps // 2 and t % cfg.update_every == 0:
            actor.train()
            for _ in range(max(1, round(cfg.utd * cfg.update_every))):
                n_updates += 1
                _update(actor, actor_t, critic, critic_t, opt_a, opt_c,
                        buf.sample(cfg.batch, rng), cfg, n_updates, lo, hi, half)
            actor.eval()
        out_of_time = time_limit_s is not None and time.time() - t0 > time_limit_s
        if t % cfg.eval_every == 0 or t == steps or out_of_time:
            rets = rollout_returns(actor, lambda: make_env(env_id, **(env_kwargs or {})),
                                   cfg.eval_episodes, seed=10_000)
            m = float(np.mean(rets))
            history.append({"step": t, "eval_return": m, "eval_std": float(np.std(rets)),
                            "train_return": float(np.mean(ep_rets[-10:])) if ep_rets else None,
                            "wall_s": round(time.time() - t0, 1)})
            log(f"[{env_id}] step {t}: eval {m:.1f} +- {np.std(rets):.1f} "
                f"(train {history[-1]['train_return']}) {history[-1]['wall_s']} s")
            if m >= best:
                best = m
                best_state = copy.deepcopy(actor.state_dict())
                if out is not None:
                    save_actor(out, actor, {**meta, "steps": t, "best_eval_return": m,
                                            "history": history,
                                            "train_wall_s": history[-1]["wall_s"]})
        if bar is not None:
            bar[0].update(bar[1], advance=1)
        if out_of_time:
            log(f"[{env_id}] time limit reached after {t} steps")
            steps = t
            break
    if bar is not None:
        bar[0].stop()
    if best_state is not None:
        actor.load_state_dict(best_state)
    info = {"history": history, "best_eval_return": best, "train_wall_s": time.time() - t0,
            "steps": steps}
    if out is not None:
        update = {"history": history, "train_wall_s": round(info["train_wall_s"], 1),
                  "total_steps": steps}
        from .checkpoint import update_config
        update_config(out, **update)
    actor.eval()
    return actor, info


def _progress(enabled: bool, total: int, label: str):
    if not enabled:
        return None
    from rich.progress import Progress

    prog = Progress(transient=False)
    prog.start()
    return prog, prog.add_task(f"TD3 {label}", total=total)
