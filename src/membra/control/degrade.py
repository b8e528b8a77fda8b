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

import copy
import hashlib
import math

import numpy as np
import torch

from ..homeostasis.recorder import find_synaptic_layers

__all__ = ["derive_seed", "weight_gn", "weight_zero", "quantize", "obs_gn", "joint_pos_noise",
           "joint_vel_noise", "lidar_gn", "ray_dropout", "JOINT_INDICES", "WEIGHT_DEGRADATIONS",
           "ENV_DEGRADATIONS", "apply_degradation", "parse_degradation"]

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


def _copy_layers(model, seed):
    new = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(int(seed))
    return new, [lin for _, lin, _ in find_synaptic_layers(new)], gen


@torch.no_grad()
def weight_gn(model, sigma: float, seed: int = 0):
    """Copy of ``model`` with ``W += N(0, sigma^2)`` on its synaptic weights."""
    _check_num("sigma", sigma)
    new, lins, gen = _copy_layers(model, seed)
    for lin in lins:
        w = lin.weight
        w.add_(torch.randn(w.shape, generator=gen, dtype=w.dtype).to(w.device) * sigma)
    return new


@torch.no_grad()
def weight_zero(model, p: float, seed: int = 0):
    """Copy of ``model`` with ``floor(p * numel)`` synaptic weights per layer set to 0."""
    _check_num("p", p, 0.0, 1.0)
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
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
        raise ValueError(f"levels must be a positive int, got {levels!r}")
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
    _check_num("sigma", sigma)
    return _make(env, seed, lambda w, o: (o + w.rng.normal(0, sigma, o.shape)).astype(o.dtype),
                 name="ObsGaussianNoise")


def _task(env) -> str:
    spec = getattr(env, "spec", None)
    return (spec.id if spec is not None else type(env.unwrapped).__name__).split("/")[-1]


def _joint_noise(env, sigma, seed, which, indices):
    _check_num("sigma", sigma)
    if indices is None:
        task = _task(env).split("-")[0]
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


def lidar_gn(env, sigma: float = 0.1, seed: int = 0):
    """Wrap a LidarNav2D env: ``N(0, sigma^2)`` on ray values, clipped to ``[0, 1]``."""
    _check_num("sigma", sigma)
    idx = np.array(LIDAR_RAYS)

    def transform(w, o):
        o = np.array(o, copy=True)
        o[idx] = np.clip(o[idx] + w.rng.normal(0, sigma, len(idx)), 0, 1)
        return o.astype(np.float32)

    return _make(env, seed, transform, name="LidarGaussianNoise")


def ray_dropout(env, k: int = 4, seed: int = 0):
    """Wrap a LidarNav2D env: ``k`` rays, chosen per episode, read 0 (no return)."""
    if not isinstance(k, int) or not 0 <= k <= len(LIDAR_RAYS):
        raise ValueError(f"k must be an int in [0, {len(LIDAR_RAYS)}], got {k!r}")

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


def parse_degradation(spec: str | None) -> tuple[str, float] | None:
    """``"weight_gn:0.05"`` -> ``("weight_gn", 0.05)``; ``"healthy"``/``None`` -> ``None``;
    ``"dynamic"`` -> ``("dynamic", 1)``."""
    if spec is None or spec in ("", "none", "healthy"):
        return None
    name, _, sev = spec.partition(":")
    known = sorted(WEIGHT_DEGRADATIONS) + sorted(ENV_DEGRADATIONS) + ["dynamic"]
    if name not in known:
        raise ValueError(f"degradation {name!r} is not known; choose one of {known}")
    if name == "dynamic":
        return name, 1
    if not sev:
        raise ValueError(f"degradation {spec!r} needs a severity, e.g. '{name}:0.1'")
    try:
        val = int(sev) if name in _INT_ARG else float(sev)
    except ValueError:
        raise ValueError(f"degradation {spec!r}: severity must be a number") from None
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
