"""What limits DWAM's recovery: reference arms and measures for the diagnosis.

DWAM is a rate homeostat: averaged over time its update vanishes when every neuron's mean rate
equals its set point ``c0`` (``docs/homeostasis.md``, "The rule"). Two tools ask whether
restoring mean input currents is what a damaged controller needs:

- :func:`mean_current_oracle` restores, per postsynaptic neuron, the mean input current at the
  healthy presynaptic rates with a bias, using what DWAM never has (the healthy weights). It is
  a reference arm, not a method and not an upper bound: a constant bias cannot restore the
  input-dependent part of the current, which DWAM's ``dW ~ c_pre`` update can partly move.
- :func:`current_shift` measures how far an adaptation moved those mean currents, and in
  which direction.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["presynaptic_rates", "mean_current_oracle", "current_shift"]


@torch.no_grad()
def presynaptic_rates(actor: nn.Module, env_fn, episodes: int = 3,
                      seed: int = 0) -> dict[str, torch.Tensor]:
    """Mean presynaptic rate ``c_pre[j]`` of every synaptic layer of ``actor``, averaged over
    the control steps of ``episodes`` healthy episodes (env seeds ``seed + e``)."""
    from ..homeostasis import RateRecorder
    from .evaluate import run_episode

    if not isinstance(episodes, int) or episodes <= 0:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    was = actor.training
    actor.eval()
    rec = RateRecorder(actor)
    sums: dict[str, torch.Tensor] = {}
    steps = {"n": 0}

    def add() -> None:
        for name, (_, c_pre) in rec.pop().items():
            sums[name] = sums.get(name, 0) + c_pre.double()
        steps["n"] += 1

    env = env_fn()
    try:
        for e in range(episodes):
            run_episode(actor, env, seed + e, on_step=add)
    finally:
        env.close()
        rec.remove()
        actor.train(was)
    return {name: (s / steps["n"]).float() for name, s in sums.items()}


@torch.no_grad()
def mean_current_oracle(healthy: nn.Module, damaged: nn.Module,
                        pre_rates: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``damaged`` whose biases restore each neuron's mean input current at the
    healthy presynaptic rates ``c_pre``: ``b_i += sum_j (W_ij - W~_ij) c_pre_j`` (``W``
    healthy, ``W~`` damaged weights, which are left as they are). Neither input is modified.

    Raises ``ValueError`` when the two models' synaptic layers or ``pre_rates`` do not match.
    """
    from ..homeostasis import find_synaptic_layers
    from ..homeostasis.recorder import copy_without_rate_hooks

    out = copy_without_rate_hooks(damaged)
    h = {n: lin for n, lin, _ in find_synaptic_layers(healthy)}
    d = {n: lin for n, lin, _ in find_synaptic_layers(out)}
    if list(h) != list(d):
        raise ValueError(f"healthy and damaged models differ in synaptic layers: {list(h)} vs "
                         f"{list(d)}")
    for name, lin in d.items():
        if name not in pre_rates:
            raise ValueError(f"pre_rates has no entry for layer {name!r} "
                             f"(has {sorted(pre_rates)})")
        w_h, c = h[name].weight, pre_rates[name].to(lin.weight)
        if w_h.shape != lin.weight.shape or c.shape != (lin.in_features,):
            raise ValueError(f"layer {name!r}: healthy weight {tuple(w_h.shape)}, damaged "
                             f"{tuple(lin.weight.shape)}, pre_rates {tuple(c.shape)}; expected "
                             f"equal weights and pre_rates of shape ({lin.in_features},)")
        if lin.bias is None:
            raise ValueError(f"layer {name!r} has no bias to carry the correction")
        lin.bias.add_((w_h - lin.weight) @ c)
    return out


@torch.no_grad()
def current_shift(healthy: nn.Module, damaged: nn.Module, adapted: nn.Module,
                  pre_rates: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """How far an adaptation moved each layer's mean input currents towards the healthy ones.

    Per synaptic layer, with ``c`` the healthy presynaptic rates: the needed shift
    ``n = (W - W~) c`` (what :func:`mean_current_oracle` adds), the achieved shift
    ``a = (W_a - W~) c`` (adapted minus damaged weights), and ``{"needed": ||n||,
    "achieved": ||a||, "ratio": ||a|| / ||n||, "cos": cos(a, n)}`` (cos 0 when either is 0).
    ``ratio = cos = 1`` would be the oracle; ``ratio`` near 0 means the rule barely moved.
    """
    from ..homeostasis import find_synaptic_layers

    lay = [{n: lin.weight.double() for n, lin, _ in find_synaptic_layers(m)}
           for m in (healthy, damaged, adapted)]
    if not (list(lay[0]) == list(lay[1]) == list(lay[2])):
        raise ValueError("healthy, damaged and adapted models differ in synaptic layers")
    out = {}
    for name in lay[0]:
        if name not in pre_rates:
            raise ValueError(f"pre_rates has no entry for layer {name!r}")
        c = pre_rates[name].double()
        need = (lay[0][name] - lay[1][name]) @ c
        got = (lay[2][name] - lay[1][name]) @ c
        nn_, ng = float(need.norm()), float(got.norm())
        cos = float(need @ got) / (nn_ * ng) if nn_ > 0 and ng > 0 else 0.0
        out[name] = {"needed": nn_, "achieved": ng, "ratio": ng / nn_ if nn_ > 0 else 0.0,
                     "cos": cos}
    return out
