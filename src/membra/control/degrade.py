r"""Seeded degradations of spiking controllers (pure: inputs are never mutated).

Weight degradations act on the synaptic ``nn.Linear`` layers of the SNN only (encoder and
decoder untouched) and return a deep copy:

- ``weight_gn(model, sigma)``: ``W += N(0, sigma^2)`` (absolute sigma) on every weight entry;
- ``weight_zero(model, p)``: per layer exactly ``floor(p * numel)`` uniformly chosen weights set
  to 0;
- ``quantize(model, levels)``: ``s = L / max|theta|`` over all weights and biases of those layers
  jointly, ``theta <- round(clamp(theta s, -L, L)) / s`` (dequantized).

Observation degradations wrap an environment (noise added to the *raw* observation, before the
actor's frozen normaliser):

- ``obs_gn(env, sigma)``: i.i.d. ``N(0, sigma^2)`` on every observation dim each step;
- ``joint_pos_noise(env, sigma=0.1)`` / ``joint_vel_noise(env, sigma=10)``: one position /
  velocity index picked per episode, replaced by ``N(0, sigma^2)`` each step;
- ``lidar_gn(env, sigma)``: ``N(0, sigma^2)`` on LidarNav2D ray values, clipped to ``[0, 1]``;
- ``ray_dropout(env, k)``: ``k`` rays per episode read 0.

Every function takes ``seed``; wrappers re-seed their noise at each ``reset(seed=s)`` from
``(seed, s)`` so that runs with and without DWAM see identical noise. :func:`derive_seed` maps
``(base_seed, condition, severity, model_id)`` to a seed.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from ..homeostasis.recorder import copy_without_rate_hooks, find_synaptic_layers

__all__ = ["derive_seed", "weight_gn", "weight_zero", "quantize", "obs_gn", "joint_pos_noise",
           "joint_vel_noise", "lidar_gn", "ray_dropout", "JOINT_INDICES", "WEIGHT_DEGRADATIONS",
           "ENV_DEGRADATIONS", "NAV_ONLY", "SEVERITY_CHECKS", "apply_degradation",
           "parse_degradation"]

# (position indices, velocity indices) of the observation, per task.
JOINT_INDICES = {
    "HalfCheetah": (tuple(range(0, 8)), tuple(range(8, 17))),
    "Ant": (tuple(range(0, 13)), tuple(range(13, 27))),
    "Hopper": (tuple(range(0, 5)), tuple(range(5, 11))),
    "Walker2d": (tuple(range(0, 8)), tuple(range(8, 17))),
    "InvertedPendulum": ((0, 1), (2, 3)),
    "Pendulum": ((0, 1), (2,)),
}
LIDAR_RAYS = tuple(range(4, 22))


def derive_seed(base_seed: int, condition: str, severity, model_id: str = "") -> int:
    """A stable 63-bit seed from ``(base_seed, condition, severity, model_id)``."""
    key = f"{int(base_seed)}|{condition}|{float(severity)!r}|{model_id}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


def _check_num(name, v, lo=0.0, hi=math.inf, lo_open=False):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or \
            v < lo or v > hi or (lo_open and v == lo):
        raise ValueError(f"{name} must be a number in {'(' if lo_open else '['}{lo}, {hi}], "
                         f"got {v!r}")


def _check_int(name, v, lo, hi=None):
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an int {rng}, got {v!r}")


# The severity check of each degradation (used by the functions and by parse_degradation).
SEVERITY_CHECKS = {
    "weight_gn": lambda v: _check_num("sigma", v),
    "weight_zero": lambda v: _check_num("p", v, 0.0, 1.0),
    "quantize": lambda v: _check_int("levels", v, 1),
    "obs_gn": lambda v: _check_num("sigma", v),
    "joint_pos_noise": lambda v: _check_num("sigma", v),
    "joint_vel_noise": lambda v: _check_num("sigma", v),
    "lidar_gn": lambda v: _check_num("sigma", v),
    "ray_dropout": lambda v: _check_int("k", v, 0, len(LIDAR_RAYS)),
}


def _copy_layers(model, seed):
    new = copy_without_rate_hooks(model)
    gen = torch.Generator().manual_seed(int(seed))
    return new, [lin for _, lin, _ in find_synaptic_layers(new)], gen


@torch.no_grad()
def weight_gn(model, sigma: float, seed: int = 0):
    """Copy of ``model`` with ``W += N(0, sigma^2)`` on its synaptic weights."""
    SEVERITY_CHECKS["weight_gn"](sigma)
    new, lins, gen = _copy_layers(model, seed)
    for lin in lins:
        w = lin.weight
        w.add_(torch.randn(w.shape, generator=gen, dtype=w.dtype).to(w.device) * sigma)
    return new


@torch.no_grad()
def weight_zero(model, p: float, seed: int = 0):
    """Copy of ``model`` with ``floor(p * numel)`` synaptic weights per layer set to 0."""
    SEVERITY_CHECKS["weight_zero"](p)
    new, lins, gen = _copy_layers(model, seed)
    for lin in lins:
        w = lin.weight
        n = math.floor(p * w.numel())
        idx = torch.randperm(w.numel(), generator=gen)[:n].to(w.device)
        w.view(-1)[idx] = 0.0
    return new


@torch.no_grad()
def quantize(model, levels: int = 255, seed: int = 0):
    """Copy of ``model`` with synaptic weights and biases on ``2*levels+1`` uniform levels
    (one joint scale ``levels / max|theta|``), dequantized. ``seed`` is unused (deterministic)."""
    SEVERITY_CHECKS["quantize"](levels)
    new, lins, _ = _copy_layers(model, seed)
    params = [p for lin in lins for p in (lin.weight, lin.bias) if p is not None]
    m = max(float(p.abs().max()) for p in params)
    if m == 0:
        return new
    s = levels / m
    for p in params:
        p.copy_(torch.round((p * s).clamp(-levels, levels)) / s)
    return new


# ---- environment wrappers ------------------------------------------------------------------

def _wrapper_base():
    from .envs import require_gymnasium

    return require_gymnasium().Wrapper


class _Noise:
    """Mixin logic: per-episode RNG from (seed, episode seed), ``transform(obs)`` per step."""

    def _init_noise(self, seed: int):
        self._seed, self._episode, self.rng = int(seed), 0, np.random.default_rng(int(seed))

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        ep = seed if seed is not None else self._episode + 1
        self._episode = ep
        self.rng = np.random.default_rng([self._seed, int(ep) % 2**63])
        self.new_episode(obs)
        return self.transform(obs), info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return self.transform(obs), r, term, trunc, info

    def new_episode(self, obs):
        pass


def _make(env, seed, transform, new_episode=None, name="Degraded"):
    base = _wrapper_base()
    cls = type(name, (_Noise, base), {})
    w = cls(env)
    w._init_noise(seed)
    w.transform = lambda obs: transform(w, obs)
    if new_episode is not None:
        w.new_episode = lambda obs: new_episode(w, obs)
    return w


def obs_gn(env, sigma: float, seed: int = 0):
    """Wrap ``env``: i.i.d. ``N(0, sigma^2)`` added to every raw observation dim each step."""
    SEVERITY_CHECKS["obs_gn"](sigma)
    return _make(env, seed, lambda w, o: (o + w.rng.normal(0, sigma, o.shape)).astype(o.dtype),
                 name="ObsGaussianNoise")


def _task(env) -> str:
    spec = getattr(env, "spec", None)
    return (spec.id if spec is not None else type(env.unwrapped).__name__).split("/")[-1]


def _family(env_id: str) -> str:
    """The task family of a gymnasium id: ``membra/LidarNav2D-v0`` -> ``LidarNav2D``."""
    return env_id.split("/")[-1].split("-")[0]


def _joint_noise(env, sigma, seed, which, indices):
    _check_num("sigma", sigma)
    if indices is None:
        task = _family(_task(env))
        if task not in JOINT_INDICES:
            raise ValueError(f"no joint indices known for {task!r}; pass indices= (known: "
                             f"{sorted(JOINT_INDICES)})")
        indices = JOINT_INDICES[task][which]
    indices = tuple(int(i) for i in indices)

    def new_episode(w, obs):
        w.index = indices[int(w.rng.integers(len(indices)))]

    def transform(w, o):
        o = np.array(o, copy=True)
        o[w.index] = w.rng.normal(0, sigma)
        return o

    return _make(env, seed, transform, new_episode,
                 name="JointPositionNoise" if which == 0 else "JointVelocityNoise")


def joint_pos_noise(env, sigma: float = 0.1, seed: int = 0, indices=None):
    """Wrap ``env``: one position index per episode replaced by ``N(0, sigma^2)``."""
    return _joint_noise(env, sigma, seed, 0, indices)


def joint_vel_noise(env, sigma: float = 10.0, seed: int = 0, indices=None):
    """Wrap ``env``: one velocity index per episode replaced by ``N(0, sigma^2)``."""
    return _joint_noise(env, sigma, seed, 1, indices)


def _require_lidar(env, what):
    shape = getattr(getattr(env, "observation_space", None), "shape", None)
    if shape != (LIDAR_RAYS[-1] + 1,):
        raise ValueError(f"{what} needs a LidarNav2D environment (observation of "
                         f"{LIDAR_RAYS[-1] + 1} floats, rays at {LIDAR_RAYS[0]}..{LIDAR_RAYS[-1]}),"
                         f" got {_task(env)!r} with observation shape {shape}")


def lidar_gn(env, sigma: float = 0.1, seed: int = 0):
    """Wrap a LidarNav2D env: ``N(0, sigma^2)`` on ray values, clipped to ``[0, 1]``."""
    SEVERITY_CHECKS["lidar_gn"](sigma)
    _require_lidar(env, "lidar_gn")
    idx = np.array(LIDAR_RAYS)

    def transform(w, o):
        o = np.array(o, copy=True)
        o[idx] = np.clip(o[idx] + w.rng.normal(0, sigma, len(idx)), 0, 1)
        return o.astype(np.float32)

    return _make(env, seed, transform, name="LidarGaussianNoise")


def ray_dropout(env, k: int = 4, seed: int = 0):
    """Wrap a LidarNav2D env: ``k`` rays, chosen per episode, read 0 (no return)."""
    SEVERITY_CHECKS["ray_dropout"](k)
    _require_lidar(env, "ray_dropout")

    def new_episode(w, obs):
        w.dead = np.array(LIDAR_RAYS)[w.rng.choice(len(LIDAR_RAYS), k, replace=False)]

    def transform(w, o):
        o = np.array(o, copy=True)
        o[w.dead] = 0.0
        return o

    return _make(env, seed, transform, new_episode, name="RayDropout")


WEIGHT_DEGRADATIONS = {"weight_gn": weight_gn, "weight_zero": weight_zero,
                       "quantize": quantize}
ENV_DEGRADATIONS = {"obs_gn": obs_gn, "joint_pos_noise": joint_pos_noise,
                    "joint_vel_noise": joint_vel_noise, "lidar_gn": lidar_gn,
                    "ray_dropout": ray_dropout}
_INT_ARG = {"quantize", "ray_dropout"}


NAV_ONLY = ("lidar_gn", "ray_dropout", "dynamic")


def parse_degradation(spec: str | None, env_id: str | None = None) -> tuple[str, float] | None:
    """``"weight_gn:0.05"`` -> ``("weight_gn", 0.05)``; ``"healthy"``/``None`` -> ``None``;
    ``"dynamic"`` -> ``("dynamic", 1)``. The severity is range-checked; with ``env_id`` the
    degradation must also apply to that task (navigation-only conditions need LidarNav2D,
    joint noise a task of :data:`JOINT_INDICES`). Raises ``ValueError`` naming the problem."""
    if spec is None or spec in ("", "none", "healthy"):
        return None
    if not isinstance(spec, str):
        raise TypeError(f"degradation must be a string such as 'weight_gn:0.05', got {spec!r}")
    name, _, sev = spec.partition(":")
    known = sorted(WEIGHT_DEGRADATIONS) + sorted(ENV_DEGRADATIONS) + ["dynamic"]
    if name not in known:
        raise ValueError(f"degradation {name!r} is not known; choose one of {known}")
    if env_id is not None:
        task = _family(env_id)
        if name in NAV_ONLY and task != "LidarNav2D":
            raise ValueError(f"degradation {name!r} applies to membra/LidarNav2D-v0 only, not "
                             f"{env_id!r}")
        if name.startswith("joint_") and task not in JOINT_INDICES:
            raise ValueError(f"degradation {name!r} needs joint indices, none known for "
                             f"{env_id!r} (known: {sorted(JOINT_INDICES)})")
    if name == "dynamic":
        return name, 1
    if not sev:
        raise ValueError(f"degradation {spec!r} needs a severity, e.g. '{name}:0.1'")
    try:
        val = int(sev) if name in _INT_ARG else float(sev)
    except ValueError:
        kind = "an int" if name in _INT_ARG else "a number"
        raise ValueError(f"degradation {spec!r}: severity must be {kind}") from None
    try:
        SEVERITY_CHECKS[name](val)
    except ValueError as e:
        raise ValueError(f"degradation {spec!r}: {e}") from None
    return name, val


def apply_degradation(actor, env_fn, degradation, seed: int):
    """``(actor', env_fn')`` for ``degradation = (name, severity)`` (or ``None``)."""
    if degradation is None:
        return actor, env_fn
    name, sev = degradation
    if name in WEIGHT_DEGRADATIONS:
        return WEIGHT_DEGRADATIONS[name](actor, sev, seed=seed), env_fn
    if name == "dynamic":
        return actor, lambda: env_fn(dynamic=True)
    wrap = ENV_DEGRADATIONS[name]
    return actor, lambda: wrap(env_fn(), sev, seed=seed)
