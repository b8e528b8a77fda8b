r"""Building blocks of the training loop: learning-rate schedule, optimizer, loss, the
model/data shape check and evaluation with per-step accuracy and firing rates.

Learning rate at optimizer step :math:`s` (``S`` steps in all, ``W`` warm-up steps):

.. math::

    \text{lr}(s) = \text{lr}\,\frac{s + 1}{W}  \quad (s < W), \qquad
    \text{lr}(s) = \text{lr}_{min} + (\text{lr} - \text{lr}_{min})
        \frac{1 + \cos(\pi (s - W) / (S - W))}{2}  \quad \text{(cosine)}.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial

import torch
from torch import nn

from ..losses import get_loss
from ..metrics import per_step_accuracy, readout_accuracy
from ..nn import SpikingNeuron, param_groups
from .config import TrainSection

__all__ = ["learning_rate", "build_optimizer", "build_loss", "check_model_io", "evaluate",
           "labels_of", "ShardSampler", "SkipSampler"]


def learning_rate(tc: TrainSection, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) under ``tc``."""
    warm = int(round(tc.warmup_epochs * steps_per_epoch))
    if step < warm:
        return tc.lr * (step + 1) / warm
    if tc.schedule == "constant":
        return tc.lr
    span = max(1, total_steps - warm)
    frac = min(1.0, (step - warm) / span)
    return tc.min_lr + (tc.lr - tc.min_lr) * 0.5 * (1.0 + math.cos(math.pi * frac))


def build_optimizer(tc: TrainSection, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD over :func:`membra.nn.param_groups` (no decay on IMP, norms, biases)."""
    groups = param_groups(model, tc.weight_decay)
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if tc.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=tc.lr, betas=tuple(tc.betas))
    return torch.optim.SGD(groups, lr=tc.lr, momentum=tc.momentum)


def build_loss(tc: TrainSection):
    """The configured loss as ``loss(outputs [T, B, K], target) -> scalar``."""
    fn = get_loss(tc.loss)
    if tc.loss == "tet":
        return partial(fn, lam=tc.loss_lambda, phi=tc.loss_phi)
    if tc.loss == "ls_tet":
        return partial(fn, eps=tc.loss_eps)
    return fn


def labels_of(y: torch.Tensor) -> torch.Tensor:
    """Class indices of hard ``[B]`` or soft ``[B, K]`` targets."""
    return y.argmax(-1) if y.dim() == 2 else y


def _shapes(args) -> str:
    out = [str(tuple(a.shape)) for a in args if isinstance(a, torch.Tensor)]
    return ", ".join(out) or "no tensor"


@torch.no_grad()
def check_model_io(model: nn.Module, in_shape: tuple, num_classes: int, T: int,
                   device: torch.device, data_name: str = "the data") -> None:
    """Run the model once on zeros ``[T, 2, *in_shape]`` and check it returns ``[T, 2, K]``.

    A layer that rejects its input raises ``ValueError`` naming the layer, its input shapes
    and the data shape."""
    x = torch.zeros(T, 2, *in_shape, device=device)
    entered: list[tuple[str, nn.Module, tuple]] = []
    names = {id(m): n for n, m in model.named_modules()}

    def pre(mod, args):
        entered.append((names.get(id(mod), "?"), mod, args))

    hooks = [m.register_forward_pre_hook(pre) for m in model.modules()]
    was_training = model.training
    model.eval()
    try:
        out = model(x)
    except (RuntimeError, ValueError, TypeError) as err:
        # innermost layer that was entered last is the one that failed
        name, mod, args = entered[-1] if entered else ("<model>", model, (x,))
        raise ValueError(
            f"model and data shapes do not match: layer {name or '<model>'!r} "
            f"({type(mod).__name__}) got input {_shapes(args)} while {data_name} gives "
            f"samples of shape {tuple(in_shape)} (batches [T={T}, B, "
            f"{', '.join(map(str, in_shape))}]): {err}") from None
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    want = (T, 2, num_classes)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model must map [T, B, *in_shape] to per-step logits [T, B, K] = "
                         f"[{T}, B, {num_classes}] for {data_name}; got {got} for B=2")


class ShardSampler(torch.utils.data.Sampler):
    """Indices ``rank, rank + world, ...`` in order, no padding (exact distributed eval)."""

    def __init__(self, n: int, rank: int, world: int):
        self.indices = list(range(rank, n, world))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class SkipSampler(torch.utils.data.Sampler):
    """``sampler``'s indices without the first ``skip`` (resuming in the middle of an
    epoch)."""

    def __init__(self, sampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.sampler)[self.skip:])

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def _neuron_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SpikingNeuron)]


@torch.no_grad()
def evaluate(model: nn.Module, loader, loss_fn, device: torch.device, reduce=None,
             amp: bool = False) -> dict:
    """Loss, per-step accuracy (each step alone and the cumulative mean readout), mean and
    last readout accuracy and the firing rate of every spiking layer over ``loader``.

    ``reduce(vector) -> vector`` sums the raw counts over processes (distributed eval)."""
    layers = _neuron_layers(model)
    rate = torch.zeros(len(layers), 2, dtype=torch.float64)  # spikes, neuron-steps

    def hook(i, _mod, _inp, out):
        s = out[0] if isinstance(out, tuple) else out
        rate[i, 0] += s.detach().double().sum().item()
        rate[i, 1] += s.numel()

    hooks = [m.register_forward_hook(partial(hook, i)) for i, (_, m) in enumerate(layers)]
    was_training = model.training
    model.eval()
    T = None
    try:
        sums = None
        for x, y in loader:
            x = x.to(device, non_blocking=True).transpose(0, 1)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                out = model(x)
                loss = loss_fn(out, y)
            out = out.float()
            B = out.shape[1]
            T = out.shape[0]
            step = (per_step_accuracy(out, y) * B).round().double().cpu()
            cum = (per_step_accuracy(out, y, cumulative=True) * B).round().double().cpu()
            extra = torch.tensor([float(loss) * B, B,
                                  round(readout_accuracy(out, y, "mean") * B),
                                  round(readout_accuracy(out, y, "last") * B)],
                                 dtype=torch.float64)
            batch = torch.cat([extra, step, cum])
            sums = batch if sums is None else sums + batch
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if sums is None:
        raise ValueError("the evaluation set is empty")
    vec = torch.cat([sums, rate.flatten()])
    if reduce is not None:
        vec = reduce(vec)
    T = (len(sums) - 4) // 2
    n = vec[1].item()
    per_step = (vec[4:4 + T] / n).tolist()
    cumulative = (vec[4 + T:4 + 2 * T] / n).tolist()
    r = vec[len(sums):].view(-1, 2)
    return {
        "test_loss": vec[0].item() / n,
        "test_acc_mean": vec[2].item() / n,
        "test_acc_last": vec[3].item() / n,
        "test_acc_per_step": per_step,
        "test_acc_cumulative": cumulative,
        "firing_rate": {name: (r[i, 0] / r[i, 1]).item() if r[i, 1] > 0 else 0.0
                        for i, (name, _) in enumerate(layers)},
        "test_samples": int(n),
    }
