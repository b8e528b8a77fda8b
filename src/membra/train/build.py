"""Building a run from its config: the run folder, and the pieces a training loop needs
(:class:`Run`: model, its DDP wrapper, optimizer, loss, gradient scaler, sampler, batch
sizes and the step counts the learning-rate schedule uses).

Datasets and the model come from :func:`membra.train.engine.build_datasets` and
:func:`membra.train.engine.build_model` (looked up there, so tests may replace them);
:func:`build_run` takes them already built.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import checkpoint as ckpt
from .config import RunConfig, check_batch_split, config_to_dict
from .distributed import DistContext
from .loop import build_loss, build_optimizer, check_model_io

__all__ = ["Run", "build_run", "prepare_run_dir", "check_resume_config", "RESUME_FREE"]

#: config keys that may differ between a checkpoint and the config resuming it
RESUME_FREE = {
    "run.name", "run.out_dir", "run.progress", "run.threads", "run.plots", "run.tensorboard",
    "run.ddp_timeout_s",
    "data.num_workers", "data.root", "train.epochs", "train.checkpoint_every",
    "train.keep_checkpoints", "train.max_steps"}

#: entries of a run folder that a run writes; none may be a link leading out of the folder
_RUN_ENTRIES = ("checkpoints", "config.toml", "metrics.jsonl", "summary.json", "tb", "plots")


@dataclass
class Run:
    """Everything a run trains with, built once from the config. Callbacks receive it.

    ``model`` is the user's module (weights, ``state_dict``), ``net`` what the loop calls
    (``model`` or its ``DistributedDataParallel`` wrapper); ``batch`` is this process's share
    of ``data.batch_size``; ``steps_per_epoch = ceil(len(sampler) / batch)`` and
    ``total_steps = steps_per_epoch * train.epochs`` drive the schedule."""

    cfg: RunConfig
    ctx: DistContext
    run_dir: Path
    train_ds: object
    test_ds: object
    info: object
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: object
    amp: bool
    scaler: torch.amp.GradScaler
    sampler: torch.utils.data.DistributedSampler
    batch: int
    steps_per_epoch: int
    total_steps: int
    model_info: dict | None = None  # checkpoint's ``model_info`` (:func:`.runs.model_info`)

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.ctx.is_main


def build_run(cfg: RunConfig, ctx: DistContext, run_dir: Path, datasets, model: nn.Module,
              info, loss_fn=None) -> Run:
    """A :class:`Run` from built ``datasets = (train, test)`` and ``model``: checks the model
    maps ``[T, B, *in_shape]`` to ``[T, B, K]``, moves it to the device, wraps it for DDP,
    builds optimizer, loss (``loss_fn`` or ``train.loss``), scaler and sampler."""
    tc = cfg.train
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    model = model.to(ctx.device)
    check_model_io(model, tuple(info.in_shape), info.num_classes, cfg.data.T, ctx.device,
                   data_name=f"dataset {cfg.data.name!r}")
    net = model
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    optimizer = build_optimizer(tc, model)
    amp = tc.amp and ctx.device.type == "cuda"
    check_batch_split(cfg, ctx.world_size)
    batch = cfg.data.batch_size // ctx.world_size
    train_ds, test_ds = datasets
    sampler = torch.utils.data.DistributedSampler(
        train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.run.seed,
        drop_last=False)
    steps = math.ceil(len(sampler) / batch)
    return Run(cfg=cfg, ctx=ctx, run_dir=run_dir, train_ds=train_ds, test_ds=test_ds, info=info,
               model=model, net=net, optimizer=optimizer,
               loss_fn=loss_fn if loss_fn is not None else build_loss(tc), amp=amp,
               scaler=torch.amp.GradScaler("cuda", enabled=amp), sampler=sampler, batch=batch,
               steps_per_epoch=steps, total_steps=steps * tc.epochs)


# ---- resuming ------------------------------------------------------------------------------
def _flat(d: dict, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and not prefix.endswith(("options.", "neuron_kwargs.")) and \
                k not in ("options", "neuron_kwargs"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume_config(saved: dict, cfg: RunConfig, path) -> None:
    """A checkpoint resumes only under its own config, up to :data:`RESUME_FREE` keys and
    ``run.tags``."""
    a, b = _flat(saved), _flat(config_to_dict(cfg))
    diff = [f"{k}: checkpoint {a.get(k)!r} vs config {b.get(k)!r}"
            for k in sorted(set(a) | set(b))
            if k not in RESUME_FREE and not k.startswith("run.tags.") and a.get(k) != b.get(k)]
    if diff:
        raise ValueError(f"checkpoint {str(path)!r} was written with a different config; "
                         f"resume with the run's own config.toml or fix: {'; '.join(diff)}")


# ---- the run folder ------------------------------------------------------------------------
def prepare_run_dir(run_dir: Path, fresh: bool, avoid: Path | None = None) -> Path:
    """Create the run folder (and ``checkpoints/``) and check it is writable. A fresh run
    never overwrites an earlier run's checkpoints (temporary files of interrupted writes do
    not count) nor writes into the folder ``avoid``: it takes ``<name>-1``, ``<name>-2``...
    An entry the run writes that is a symbolic link leading outside the folder is a
    ``ValueError``."""
    return make_run_dir(run_dir, fresh, avoid)[0]


def make_run_dir(run_dir: Path, fresh: bool, avoid: Path | None) -> tuple[Path, list[Path]]:
    """:func:`prepare_run_dir`, also returning the folders it created (deepest first)."""
    run_dir = Path(run_dir)
    if fresh:
        run_dir = _free_run_dir(run_dir, avoid)
    root = Path(os.path.realpath(run_dir))
    for entry in _RUN_ENTRIES:
        p = run_dir / entry
        if p.is_symlink() and root not in Path(os.path.realpath(p)).parents:
            raise ValueError(f"run folder entry {entry} ({str(p)!r}) is a symbolic link "
                             "leading outside the run folder; membra writes there, so it "
                             "refuses to follow it")
    created = []
    for d in (run_dir / "checkpoints", run_dir, *run_dir.parents):
        if d.exists() or d.is_symlink():
            break
        created.append(d)
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        remove_dirs(created, run_dir)
        raise OSError(err.errno, f"run folder {str(run_dir)!r} is not writable "
                                 f"({err.strerror or err}); choose another with "
                                 "--set run.out_dir=PATH or run.name=NAME") from None
    return run_dir, created


def _free_run_dir(run_dir: Path, avoid: Path | None) -> Path:
    """``run_dir`` unless it holds a checkpoint (temp files do not count) or contains
    ``avoid``; otherwise the first ``<name>-<i>`` that does not exist."""
    def holds_avoid(d: Path) -> bool:
        if avoid is None:
            return False
        a, d = Path(os.path.realpath(avoid)), Path(os.path.realpath(d))
        return d == a or d in a.parents

    if not ckpt.has_checkpoints(run_dir / "checkpoints") and not holds_avoid(run_dir):
        return run_dir
    i = 1
    while (run_dir.parent / f"{run_dir.name}-{i}").exists():
        i += 1
    return run_dir.parent / f"{run_dir.name}-{i}"


def remove_dirs(created: list[Path], run_dir: Path) -> None:
    """Remove folders a run created (deepest first): the run folder with everything in it,
    the parents above it only when empty."""
    for d in created:
        if d == run_dir or run_dir in d.parents:
            shutil.rmtree(d, ignore_errors=True)
        else:
            try:
                d.rmdir()
            except OSError:
                pass
