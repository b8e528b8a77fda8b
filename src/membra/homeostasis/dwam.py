"""DWAM: inference-time BCM weight adaptation with a CV-gated gain (module :mod:`.rule`).

Usage::

    dwam = DWAM(actor, DWAMConfig(eta=3e-4))
    dwam.calibrate(env_fn, episodes=3, seed=0)   # healthy rates -> c0 (before any damage)
    dwam.reset()                                 # W <- W_ref, statistics re-initialised
    with dwam.active():                          # step() after every forward of the model
        action = actor(obs)
    dwam.remove()                                # hooks off, original weights back

All updates run under ``torch.no_grad()`` and never touch ``.grad``. ``W_ref`` are the weights
when the adapter is attached (for a degraded model: the degraded weights; DWAM never sees the
healthy ones) and ``reset()`` returns to them.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from . import rule
from .recorder import MembraHook, RateRecorder

__all__ = ["DWAMConfig", "DWAM"]

_CALIB_KEYS = ("c0", "healthy_rate", "healthy_cv")
_STATE_KEYS = ("mu", "var", "theta", "w_ref")


@dataclass
class DWAMConfig:
    """DWAM hyper-parameters (membra's defaults; see docs/homeostasis.md).

    Attributes:
        zeta: CV gain (``k = zeta * CV``); 0 disables DWAM exactly.
        eta: learning rate of ``dW = eta * phi * c_pre``.
        c0: ``"calibrated"`` (per-neuron healthy mean rate, floored at ``c0_min``) or a float.
        c0_min: floor of calibrated set points.
        a_theta: EMA rate of ``theta_M`` (must exceed ``a_stat``).
        a_stat: EMA rate of the rate mean/variance.
        rho: drift bound per weight, in units of the layer's ``mean|W_ref|``.
        eps: CV denominator guard.
        gain: ``"cv"`` (DWAM, ``k = zeta * CV``) or ``"constant"`` (plain BCM, ``k = zeta``).
        allow_train: allow updates while the model is in training mode.
        guard_k: stability guard for long (persistent) runs; 0 = off. After each step the
            rate deviation ``dev = mean over layers of mean_i |mu_i - r_i|`` (``mu`` the EMA
            rate, ``r`` the healthy rate, or ``c0`` when uncalibrated) is compared with the
            previous step's: a step where it does not grow is *good* and snapshots the
            weights and statistics; when it grows ``guard_k`` steps in a row, the weights and
            statistics are rolled back to the last good snapshot (exactly) and the count
            restarts. ``rho`` bounds the drift from ``W_ref`` in every case.
    """

    zeta: float = 1.0
    eta: float = 3e-4
    c0: float | str = "calibrated"
    c0_min: float = 0.02
    a_theta: float = 0.1
    a_stat: float = 0.05
    rho: float = 1.0
    eps: float = 1e-3
    gain: str = "cv"
    allow_train: bool = False
    guard_k: int = 0

    def __post_init__(self):
        if not isinstance(self.guard_k, int) or isinstance(self.guard_k, bool) or \
                self.guard_k < 0:
            raise ValueError(f"DWAMConfig.guard_k must be an int >= 0, got {self.guard_k!r}")
        for name in ("zeta", "eta", "rho", "eps", "c0_min"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) \
                    or v < 0:
                raise ValueError(f"DWAMConfig.{name} must be a finite number >= 0, got {v!r}")
        for name in ("a_theta", "a_stat"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ValueError(f"DWAMConfig.{name} must be in (0, 1], got {v!r}")
        if self.gain not in rule.GAIN_MODES:
            raise ValueError(f"DWAMConfig.gain must be one of {list(rule.GAIN_MODES)}, got "
                             f"{self.gain!r}")
        if isinstance(self.c0, str):
            if self.c0 != "calibrated":
                raise ValueError(f"DWAMConfig.c0 must be 'calibrated' or a positive float, got "
                                 f"{self.c0!r}")
        elif not isinstance(self.c0, (int, float)) or not self.c0 > 0:
            raise ValueError(f"DWAMConfig.c0 must be 'calibrated' or a positive float, got "
                             f"{self.c0!r}")


class _StepHook(MembraHook):
    """Model forward hook of :meth:`DWAM.active`: one update after each forward."""

    __slots__ = ("dwam",)

    def __init__(self, dwam):
        self.dwam = dwam

    def __call__(self, module, inp, out):
        self.dwam.step()


class _Layer:
    """Per-layer buffers of one adapter."""

    def __init__(self, name: str, linear: nn.Linear, cfg: DWAMConfig):
        self.name, self.linear = name, linear
        w = linear.weight.detach()
        n = w.shape[0]
        self.w_orig = w.clone()
        self.w_ref = w.clone()
        self.bound = float(cfg.rho * w.abs().mean())
        c0 = float(cfg.c0) if not isinstance(cfg.c0, str) else cfg.c0_min
        self.c0 = torch.full((n,), c0, dtype=w.dtype, device=w.device)
        self.healthy_rate = torch.full_like(self.c0, float("nan"))
        self.healthy_cv = torch.full_like(self.c0, float("nan"))
        self.calibrated = not isinstance(cfg.c0, str)
        self.state = rule.init_state(self.c0)
        self.k = torch.zeros_like(self.c0)


class DWAM:
    """Dynamic weight adaptation of ``model``'s synaptic layers (module docstring).

    Args:
        model: a membra SNN (see :func:`membra.homeostasis.find_synaptic_layers`).
        config: :class:`DWAMConfig` (default: ``DWAMConfig()``).
        layers: names of the synaptic layers to adapt (``None``: all).
    """

    def __init__(self, model: nn.Module, config: DWAMConfig | None = None, layers=None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"DWAM adapts an nn.Module, got {type(model).__name__}")
        self.model = model
        self.config = config if config is not None else DWAMConfig()
        if not isinstance(self.config, DWAMConfig):
            raise TypeError(f"config must be a DWAMConfig, got {type(self.config).__name__}")
        self._rec = RateRecorder(model, layers)
        self.layers = {name: _Layer(name, lin, self.config) for name, lin, _ in self._rec.pairs}
        self._active = None
        self.steps = 0
        self.rollbacks = 0
        self._guard_reset()

    def _guard_reset(self) -> None:
        self._dev_prev, self._streak, self._good = float("inf"), 0, None

    # ---- calibration -----------------------------------------------------------------
    @torch.no_grad()
    def calibrate(self, env_fn=None, episodes: int = 3, seed: int = 0, inputs=None,
                  max_steps: int | None = None) -> dict[str, torch.Tensor]:
        """Record the healthy model's per-neuron rates without adapting, and set ``c0``.

        Either ``env_fn`` (a callable returning a gymnasium-style env; the model is driven by
        ``model.act(obs)`` or ``model(obs[None])``, env seeds ``seed + e``) or ``inputs`` (an
        iterable of input batches, one forward = one control step). Returns ``{layer: c0}``.
        """
        if (env_fn is None) == (inputs is None):
            raise ValueError("calibrate needs exactly one of env_fn= or inputs=")
        rec = RateRecorder(self.model, list(self.layers), history=True)
        try:
            if inputs is not None:
                for x in inputs:
                    self.model(x)
                    rec.pop()
            else:
                if not isinstance(episodes, int) or episodes <= 0:
                    raise ValueError(f"episodes must be a positive int, got {episodes!r}")
                act = getattr(self.model, "act", None) or (
                    lambda o: self.model(torch.as_tensor(o, dtype=torch.float32)[None])[0]
                    .cpu().numpy())
                env = env_fn()
                try:
                    for e in range(episodes):
                        obs, _ = env.reset(seed=seed + e)
                        n = 0
                        while True:
                            obs, _, term, trunc, _ = env.step(act(obs))
                            rec.pop()
                            n += 1
                            if term or trunc or (max_steps and n >= max_steps):
                                break
                finally:
                    env.close()
        finally:
            rec.remove()
        self._rec.pop()  # discard what the adapter's own hooks saw
        out = {}
        for name, layer in self.layers.items():
            hist = rec.history[name]
            if not hist:
                raise ValueError(f"calibration saw no forward pass through layer {name!r}")
            r = torch.stack(hist)
            layer.healthy_rate = r.mean(0)
            layer.healthy_cv = r.std(0, unbiased=False) / (layer.healthy_rate + self.config.eps)
            if isinstance(self.config.c0, str):
                layer.c0 = layer.healthy_rate.clamp_min(self.config.c0_min)
            layer.calibrated = True
            out[name] = layer.c0
        self.reset()
        return out

    # ---- running ---------------------------------------------------------------------
    @torch.no_grad()
    def reset(self) -> None:
        """Restore ``W_ref`` and re-initialise the statistics (call at episode start)."""
        for layer in self.layers.values():
            layer.linear.weight.copy_(layer.w_ref)
            layer.state = rule.init_state(layer.c0)
            layer.k = torch.zeros_like(layer.c0)
        self._rec.pop()
        self.steps = 0
        self.rollbacks = 0
        self._guard_reset()

    @torch.no_grad()
    def step(self) -> None:
        """Apply one update from the rates recorded since the last step (no-op if none)."""
        if self.model.training and not self.config.allow_train:
            raise RuntimeError("DWAM.step: the model is in training mode; call model.eval() or "
                               "set DWAMConfig(allow_train=True)")
        rates = self._rec.pop()
        cfg = self.config
        for name, (c, c_pre) in rates.items():
            layer = self.layers[name]
            w = layer.linear.weight
            new_w, layer.state, layer.k, _ = rule.dwam_step(
                w.detach(), layer.state, c.to(w.dtype), c_pre.to(w.dtype), layer.c0,
                zeta=cfg.zeta, eta=cfg.eta, a_stat=cfg.a_stat, a_theta=cfg.a_theta,
                eps=cfg.eps, w_ref=layer.w_ref, bound=layer.bound, gain_mode=cfg.gain)
            if new_w is not w:
                w.copy_(new_w)
        if rates:
            self.steps += 1
            if cfg.guard_k:
                self._guard()

    def rate_deviation(self) -> float:
        """``mean over layers of mean_i |mu_i - r_i|`` (healthy rate ``r``, or ``c0``)."""
        devs = []
        for layer in self.layers.values():
            ref = layer.healthy_rate
            ref = torch.where(torch.isnan(ref), layer.c0, ref)
            devs.append(float((layer.state.mu - ref).abs().mean()))
        return float(np.mean(devs))

    def _guard(self) -> None:
        """The stability guard of :class:`DWAMConfig` (``guard_k``)."""
        dev = self.rate_deviation()
        if dev > self._dev_prev:
            self._streak += 1
        else:
            self._streak = 0
            self._good = {n: (layer.linear.weight.detach().clone(), layer.state, layer.k)
                          for n, layer in self.layers.items()}
        self._dev_prev = dev
        if self._streak >= self.config.guard_k and self._good is not None:
            for n, layer in self.layers.items():
                w, st, k = self._good[n]
                layer.linear.weight.copy_(w)
                layer.state, layer.k = st, k
            self.rollbacks += 1
            self._streak = 0
            self._dev_prev = self.rate_deviation()

    @contextlib.contextmanager
    def active(self):
        """Within the block, :meth:`step` runs after every forward of the model."""
        if self.model.training and not self.config.allow_train:
            raise RuntimeError("DWAM.active: the model is in training mode; call model.eval()")
        handle = self.model.register_forward_hook(_StepHook(self))
        try:
            yield self
        finally:
            handle.remove()

    def remove(self) -> None:
        """Detach the hooks and restore the weights the model had when DWAM was attached."""
        self._rec.remove()
        with torch.no_grad():
            for layer in self.layers.values():
                layer.linear.weight.copy_(layer.w_orig)

    # ---- inspection and serialisation --------------------------------------------------
    @torch.no_grad()
    def stats(self) -> dict[str, dict]:
        """Per layer: ``mu``, ``cv``, ``theta_M``, ``k`` (tensors ``[n_post]``), ``c0`` and
        ``drift = ||W - W_ref||_F / ||W_ref||_F``."""
        out = {}
        for name, layer in self.layers.items():
            s = layer.state
            w = layer.linear.weight
            out[name] = {
                "mu": s.mu.clone(), "cv": torch.sqrt(s.var) / (s.mu + self.config.eps),
                "theta_M": s.theta.clone(), "k": layer.k.clone(), "c0": layer.c0.clone(),
                "drift": float((w - layer.w_ref).norm() / layer.w_ref.norm().clamp_min(1e-12)),
            }
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Calibration (``c0``, healthy rates/CV) and running state (``mu``, ``var``,
        ``theta``, ``w_ref``) as ``{"<layer>.<key>": tensor}`` (safetensors-ready)."""
        sd = {}
        for name, layer in self.layers.items():
            vals = {"c0": layer.c0, "healthy_rate": layer.healthy_rate,
                    "healthy_cv": layer.healthy_cv, "mu": layer.state.mu,
                    "var": layer.state.var, "theta": layer.state.theta, "w_ref": layer.w_ref}
            sd.update({f"{name}.{k}": v.detach().clone().contiguous() for k, v in vals.items()})
        return sd

    def calibration_dict(self) -> dict[str, torch.Tensor]:
        """Only the calibration entries of :meth:`state_dict` (to move to a degraded copy)."""
        return {k: v for k, v in self.state_dict().items() if k.rsplit(".", 1)[1] in _CALIB_KEYS}

    @torch.no_grad()
    def load_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        """Load :meth:`state_dict` or :meth:`calibration_dict` output. Calibration-only dicts
        re-initialise the statistics from the loaded ``c0``."""
        known = {f"{n}.{k}" for n in self.layers for k in _CALIB_KEYS + _STATE_KEYS}
        unknown = sorted(set(sd) - known)
        if unknown:
            raise ValueError(f"DWAM.load_state_dict: unexpected keys {unknown[:5]}")
        for name, layer in self.layers.items():
            if f"{name}.c0" not in sd:
                raise ValueError(f"DWAM.load_state_dict: missing '{name}.c0'")
            dev, dt = layer.c0.device, layer.c0.dtype

            def get(k, default, _n=name, _dev=dev, _dt=dt):
                v = sd.get(f"{_n}.{k}")
                return default if v is None else v.to(_dev, _dt).clone()

            layer.c0 = get("c0", None)
            if layer.c0.shape != layer.healthy_rate.shape:
                raise ValueError(f"DWAM.load_state_dict: '{name}.c0' has shape "
                                 f"{tuple(layer.c0.shape)}, expected "
                                 f"{tuple(layer.healthy_rate.shape)}")
            layer.healthy_rate = get("healthy_rate", layer.healthy_rate)
            layer.healthy_cv = get("healthy_cv", layer.healthy_cv)
            layer.calibrated = True
            init = rule.init_state(layer.c0)
            layer.state = rule.BCMState(get("mu", init.mu), get("var", init.var),
                                        get("theta", init.theta))
            layer.w_ref = get("w_ref", layer.w_ref)

    def config_dict(self) -> dict:
        return asdict(self.config)

    def healthy_rates(self) -> dict[str, np.ndarray]:
        return {n: layer.healthy_rate.cpu().numpy() for n, layer in self.layers.items()}

    def __repr__(self) -> str:
        return f"DWAM(layers={list(self.layers)}, config={self.config})"
