"""The training engine: :func:`fit` runs a config end to end, :func:`evaluate_run`
re-evaluates a saved run.

A run folder ``<run.out_dir>/<run.name>/`` holds ``config.toml`` (resolved), ``metrics.jsonl``
(one JSON line per epoch), ``checkpoints/`` (``epoch_NNNN.safetensors`` and a ``latest``
pointer), ``tb/`` (TensorBoard events, if installed), ``plots/*.png`` and ``summary.json``.

Exact resume: the data order of epoch ``e`` depends only on ``(run.seed, e)``, and a
checkpoint stores weights, optimizer state, the step, the position inside the epoch, the
running sums of the epoch and every RNG state; resuming therefore reproduces the
uninterrupted run bit for bit on the same machine.

Callbacks are callables ``cb(event, info)`` with ``event`` in ``"batch_end"``,
``"epoch_end"``, ``"fit_end"``; ``info`` holds ``epoch``, ``step``, ``model``, ``optimizer``
and (at epoch end) ``metrics``. Returning ``True`` asks the run to stop like Ctrl-C does
(checkpoint, then return).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from .. import readout as readout_fn
from . import checkpoint as ckpt
from . import rng
from .config import (
    RunConfig,
    check_batch_split,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    memory_error,
)
from .distributed import (
    DistContext,
    all_reduce_sum,
    broadcast_object,
    peer_failure,
    setup,
    teardown,
)
from .loop import (
    ShardSampler,
    SkipSampler,
    build_loss,
    build_optimizer,
    check_model_io,
    evaluate,
    labels_of,
    learning_rate,
)
from .report import Reporter, per_step_table
from .runs import load_run, model_info

__all__ = ["fit", "evaluate_run", "build_datasets", "build_model", "prepare_run_dir"]

# config keys that may differ between a checkpoint and the config resuming it
_RESUME_FREE = {
    "run.name", "run.out_dir", "run.progress", "run.threads", "run.plots", "run.tensorboard",
    "run.ddp_timeout_s",
    "data.num_workers", "data.root", "train.epochs", "train.checkpoint_every",
    "train.keep_checkpoints", "train.max_steps"}


# ---- building blocks -----------------------------------------------------------------------
def build_datasets(cfg: RunConfig):
    """``(train, test)`` datasets of ``cfg.data`` from :mod:`membra.data`."""
    from ..data import get_dataset

    d = cfg.data
    kw = dict(T=d.T, root=d.root, seed=cfg.run.seed, encoding=d.encoding, **d.options)
    return get_dataset(d.name, split="train", **kw), get_dataset(d.name, split="test", **kw)


def _info(ds):
    info = getattr(ds, "info", None)
    if info is None:
        raise ValueError(f"dataset {type(ds).__name__} has no .info (DatasetInfo with in_shape "
                         "and num_classes)")
    return info


def build_model(cfg: RunConfig, info) -> nn.Module:
    """The model of ``cfg.model`` for data described by ``info`` (:mod:`membra.models`)."""
    from ..models import create_model

    m = cfg.model
    return create_model(m.name, in_shape=tuple(info.in_shape), num_classes=info.num_classes,
                        neuron=m.neuron, neuron_kwargs=dict(m.neuron_kwargs), **m.options)


#: entries of a run folder that a run writes; none may be a link leading out of the folder
_RUN_ENTRIES = ("checkpoints", "config.toml", "metrics.jsonl", "summary.json", "tb", "plots")


def prepare_run_dir(run_dir: Path, fresh: bool, avoid: Path | None = None) -> Path:
    """Create the run folder (and ``checkpoints/``) and check it is writable. A fresh run
    never overwrites an earlier run's checkpoints (temporary files of interrupted writes do
    not count) nor writes into the folder ``avoid``: it takes ``<name>-1``, ``<name>-2``...
    An entry the run writes that is a symbolic link leading outside the folder is a
    ``ValueError``."""
    return _make_run_dir(run_dir, fresh, avoid)[0]


def _make_run_dir(run_dir: Path, fresh: bool, avoid: Path | None) -> tuple[Path, list[Path]]:
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
        _remove_dirs(created, run_dir)
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


def _remove_dirs(created: list[Path], run_dir: Path) -> None:
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


def _as_config(cfg) -> RunConfig:
    if isinstance(cfg, RunConfig):
        return cfg
    if isinstance(cfg, (str, Path)):
        return load_config(cfg)
    if isinstance(cfg, dict):
        return config_from_dict(cfg)
    raise TypeError(f"cfg must be a RunConfig, a TOML path or a dict, got {type(cfg).__name__}")


def _flat(d: dict, prefix="") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and not prefix.endswith(("options.", "neuron_kwargs.")) and \
                k not in ("options", "neuron_kwargs"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_resume_config(saved: dict, cfg: RunConfig, path) -> None:
    a, b = _flat(saved), _flat(config_to_dict(cfg))
    diff = [f"{k}: checkpoint {a.get(k)!r} vs config {b.get(k)!r}"
            for k in sorted(set(a) | set(b)) if k not in _RESUME_FREE and a.get(k) != b.get(k)]
    if diff:
        raise ValueError(f"checkpoint {str(path)!r} was written with a different config; "
                         f"resume with the run's own config.toml or fix: {'; '.join(diff)}")


class _Stop:
    """Ctrl-C (SIGINT) handling: the first press asks for a clean stop, the second aborts."""

    def __init__(self, reporter: Reporter):
        self.requested = False
        self.reporter = reporter
        self._old = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.reporter.print("\n[yellow]Ctrl-C: finishing this batch and writing a checkpoint "
                            "(press again to abort without one)[/]")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


# ---- the trainer ---------------------------------------------------------------------------
class _Trainer:
    def __init__(self, cfg: RunConfig, ctx: DistContext, run_dir, loaded, model, loss_fn,
                 callbacks):
        """``loaded``: ``(path, tensors, meta)`` of a verified checkpoint to resume, or None.
        Everything that can fail runs before the run folder gets a file; a run folder this
        run created is removed again if it fails here."""
        self.cfg, self.ctx = cfg, ctx
        self.callbacks = list(callbacks)
        resume_path = loaded[0] if loaded is not None else None
        if loaded is not None:
            _check_resume_config(loaded[2]["config"], cfg, resume_path)
        fresh, avoid, self.loose = resume_path is None, None, False
        if run_dir is None:
            own = ckpt.run_folder_of(resume_path) if resume_path is not None else None
            if own is None:  # a fresh run, or a loose checkpoint file: a new run folder
                run_dir = Path(cfg.run.out_dir) / cfg.run.name
                fresh, self.loose = True, resume_path is not None
                avoid = resume_path.parent if self.loose else None
            else:
                run_dir = own
        self.created: list[Path] = []
        if ctx.is_main:
            run_dir, self.created = _make_run_dir(Path(run_dir), fresh, avoid)
        self.run_dir = Path(broadcast_object(str(run_dir), ctx))
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.saved = False
        try:
            self._build(model, loss_fn, loaded)
        except BaseException:
            _remove_dirs(self.created, self.run_dir)
            raise
        self.start_epoch = self.epoch
        if ctx.is_main:  # everything checked: the run's first writes
            ckpt.clean_stale_temps(self.ckpt_dir)
            ckpt.atomic_write_bytes(self.run_dir / "config.toml", dump_config(cfg).encode())
            if loaded is not None:
                self.reporter.write_history(self.history)

    def _build(self, model, loss_fn, loaded) -> None:
        cfg, ctx, tc = self.cfg, self.ctx, self.cfg.train
        if cfg.run.plots and ctx.is_main:  # say so before training, not after it
            from ..plotting import require_matplotlib

            require_matplotlib()
        self.reporter = Reporter(self.run_dir, ctx.is_main, cfg.run.progress)
        rng.seed_everything(cfg.run.seed)
        self.train_ds, self.test_ds = build_datasets(cfg)
        info = _info(self.train_ds)
        self.info = info
        self.model_info = model_info(info.in_shape, info.num_classes, model)
        if model is None:
            model = build_model(cfg, info)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model.to(ctx.device)
        check_model_io(self.model, tuple(info.in_shape), info.num_classes, cfg.data.T,
                       ctx.device, data_name=f"dataset {cfg.data.name!r}")
        self.net = self.model
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = build_optimizer(tc, self.model)
        self.loss_fn = loss_fn if loss_fn is not None else build_loss(tc)
        self.amp = tc.amp and ctx.device.type == "cuda"
        if tc.amp and not self.amp:
            self.reporter.print("[yellow]train.amp needs CUDA; training in float32 on "
                                f"{ctx.device}[/]")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

        check_batch_split(cfg, ctx.world_size)
        self.batch = cfg.data.batch_size // ctx.world_size
        self.sampler = torch.utils.data.DistributedSampler(
            self.train_ds, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
            seed=cfg.run.seed, drop_last=False)
        self.steps_per_epoch = math.ceil(len(self.sampler) / self.batch)
        self.total_steps = self.steps_per_epoch * tc.epochs
        self.epoch, self.step, self.batch_in_epoch = 0, 0, 0
        self.sums = [0.0, 0.0, 0.0]  # loss * B, correct, samples (this rank, this epoch)
        self.seen_time = 0.0
        self.history: list[dict] = []
        if loaded is not None:
            self._restore(*loaded)

    # ---- checkpoints -------------------------------------------------------------------
    def _state(self) -> tuple[dict, dict]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        opt_t, opt_skel = ckpt.flatten_state(self.optimizer.state_dict(), "optim")
        rng_t, rng_meta = rng.capture()
        tensors.update(opt_t)
        tensors.update(rng_t)
        meta = {
            "config": config_to_dict(self.cfg), "epoch": self.epoch, "step": self.step,
            "batch_in_epoch": self.batch_in_epoch, "epoch_sums": self.sums,
            "epoch_time": self.seen_time, "optimizer": opt_skel,
            "scheduler": {"kind": self.cfg.train.schedule, "step": self.step,
                          "total_steps": self.total_steps},
            "scaler": self.scaler.state_dict() if self.amp else None,
            "rng": rng_meta, "history": self.history, "world_size": self.ctx.world_size,
            "torch": torch.__version__, "model_info": self.model_info,
        }
        return tensors, meta

    def save(self, name: str) -> Path | None:
        path = None
        if self.ctx.is_main:
            tensors, meta = self._state()
            path = ckpt.save_checkpoint(self.ckpt_dir / name, tensors, meta)
            ckpt.write_latest(self.ckpt_dir, name)
            self._prune(keep=name)
        self.saved = True
        return path

    def _prune(self, keep: str) -> None:
        n = self.cfg.train.keep_checkpoints
        if n <= 0:
            return
        files = sorted(p for p in self.ckpt_dir.glob("epoch_*.safetensors") if p.name != keep)
        for p in files[: max(0, len(files) - (n - 1))]:
            p.unlink(missing_ok=True)
        for p in self.ckpt_dir.glob("interrupt_*.safetensors"):
            if p.name != keep:
                p.unlink(missing_ok=True)

    def _restore(self, path: Path, tensors: dict, meta: dict) -> None:
        """Continue from a verified checkpoint (:func:`checkpoint.load_run_checkpoint`)."""
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        ckpt.load_model_state(self.model, model_state, source=f"checkpoint {str(path)!r}")
        try:
            self.optimizer.load_state_dict(ckpt.unflatten_state(meta["optimizer"], tensors))
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as err:
            raise ValueError(f"checkpoint {str(path)!r}: optimizer state does not match "
                             f"({err})") from None
        if self.amp and meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        if meta.get("world_size", 1) != self.ctx.world_size and meta["batch_in_epoch"]:
            raise ValueError(f"checkpoint {str(path)!r} stopped inside an epoch with "
                             f"{meta['world_size']} processes; resume it with as many")
        if meta["batch_in_epoch"] > self.steps_per_epoch:
            raise ValueError(f"checkpoint {str(path)!r}: metadata 'batch_in_epoch' "
                             f"({meta['batch_in_epoch']}) exceeds the {self.steps_per_epoch} "
                             "batches of an epoch")
        self.epoch, self.step = meta["epoch"], meta["step"]
        self.batch_in_epoch, self.sums = meta["batch_in_epoch"], list(meta["epoch_sums"])
        self.seen_time = meta.get("epoch_time", 0.0)
        self.history = list(meta["history"])
        rng.restore(tensors, meta["rng"])
        self.reporter.print(f"resumed from {path} (epoch {self.epoch}, step {self.step})")
        if self.loose:
            self.reporter.print(f"{path} is not inside a run folder, so this run writes a new "
                                f"run folder {self.run_dir} (nothing is written beside the "
                                "file)")

    def _state_is_finite(self) -> bool:
        """All floating-point parameters and buffers finite (on every rank)."""
        bad = any(not bool(torch.isfinite(t).all()) for t in self.model.state_dict().values()
                  if t.is_floating_point())
        (bad,) = self._flags(bad)
        return not bad

    # ---- one epoch ---------------------------------------------------------------------
    def _loader(self, ds, sampler, batch):
        return torch.utils.data.DataLoader(
            ds, batch_size=batch, sampler=sampler, num_workers=self.cfg.data.num_workers,
            pin_memory=self.ctx.device.type == "cuda", drop_last=False,
            generator=torch.Generator().manual_seed(self.cfg.run.seed * 100_003 + self.epoch))

    def _emit(self, event: str, **info) -> bool:
        stop = False
        for cb in self.callbacks:
            stop |= bool(cb(event, {"epoch": self.epoch, "step": self.step, "model": self.model,
                                    "optimizer": self.optimizer, **info}))
        return stop

    def _flags(self, *flags: bool) -> list[bool]:
        """Agree on stop/NaN flags across ranks (any rank -> all)."""
        if not self.ctx.distributed:
            return list(flags)
        return [v > 0 for v in all_reduce_sum([float(f) for f in flags], self.ctx).tolist()]

    def train_epoch(self, progress, stopper: _Stop) -> str | None:
        """Train the rest of the current epoch; returns ``None`` when it ends normally or
        ``"interrupted"``/``"nan_loss"``/``"max_steps"``."""
        tc = self.cfg.train
        self.sampler.set_epoch(self.epoch)
        if hasattr(self.train_ds, "set_epoch"):  # per-epoch Poisson encoding / augmentation
            self.train_ds.set_epoch(self.epoch)
        sampler = SkipSampler(self.sampler, self.batch_in_epoch * self.batch)
        loader = self._loader(self.train_ds, sampler, self.batch)
        task = progress.add_task(f"epoch {self.epoch + 1}/{tc.epochs}",
                                 total=self.steps_per_epoch, completed=self.batch_in_epoch,
                                 info="")
        self.net.train()
        t0 = time.perf_counter()
        for x, y in loader:
            x = x.to(self.ctx.device, non_blocking=True).transpose(0, 1)
            y = y.to(self.ctx.device, non_blocking=True)
            lr = learning_rate(tc, self.step, self.total_steps, self.steps_per_epoch)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            with torch.autocast(self.ctx.device.type, enabled=self.amp):
                out = self.net(x)
                loss = self.loss_fn(out, y)
            (nan,) = self._flags(not torch.isfinite(loss.detach()).item())
            if nan:
                return "nan_loss"
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if tc.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            self.batch_in_epoch += 1
            B = y.shape[0]
            pred = readout_fn(out.detach().float(), self.cfg.eval.readout).argmax(-1)
            self.sums[0] += loss.item() * B
            self.sums[1] += (pred == labels_of(y)).sum().item()
            self.sums[2] += B
            elapsed = self.seen_time + time.perf_counter() - t0
            progress.update(task, advance=1, info=(
                f"loss {self.sums[0] / self.sums[2]:.4f}  acc "
                f"{100 * self.sums[1] / self.sums[2]:.1f}%  "
                f"{self.sums[2] * self.ctx.world_size / max(elapsed, 1e-9):,.0f} samples/s"))
            stop = self._emit("batch_end", loss=loss.item())
            done = tc.max_steps and self.step >= tc.max_steps
            (stop,) = self._flags(stop or stopper.requested)
            if stop or done:
                self.seen_time += time.perf_counter() - t0
                last = self.batch_in_epoch >= self.steps_per_epoch
                return None if (done and last) else ("interrupted" if stop else "max_steps")
        self.seen_time += time.perf_counter() - t0
        return None

    def end_epoch(self) -> dict:
        sums = all_reduce_sum(self.sums, self.ctx).tolist()
        eval_loader = self._loader(
            self.test_ds, ShardSampler(len(self.test_ds), self.ctx.rank, self.ctx.world_size),
            self.cfg.data.eval_batch_size // self.ctx.world_size)
        reduce = (lambda v: all_reduce_sum(v, self.ctx)) if self.ctx.distributed else None
        ev = evaluate(self.model, eval_loader, self.loss_fn, self.ctx.device, reduce, self.amp)
        mode = self.cfg.eval.readout
        m = {"epoch": self.epoch + 1, "step": self.step,
             "lr": self.optimizer.param_groups[0]["lr"],
             "train_loss": sums[0] / sums[2], "train_acc": sums[1] / sums[2],
             "readout": mode, "test_acc": ev[f"test_acc_{mode}"], **ev,
             "samples_per_s": sums[2] / max(self.seen_time, 1e-9),
             "epoch_time_s": self.seen_time}
        self.history.append(m)
        self.epoch += 1
        self.batch_in_epoch, self.sums, self.seen_time = 0, [0.0, 0.0, 0.0], 0.0
        return m

    # ---- the run -----------------------------------------------------------------------
    def run(self) -> dict:
        cfg, tc, rep = self.cfg, self.cfg.train, self.reporter
        rep.print(f"[bold]membra train[/] {cfg.run.name}: {cfg.data.name} (T={cfg.data.T}) -> "
                  + (f"{type(self.model).__name__} (custom)" if self.model_info["custom"] else
                     f"{cfg.model.name} ({cfg.model.neuron})") + f", loss {tc.loss}, readout "
                  f"{cfg.eval.readout}, {tc.epochs} epochs on {self.ctx.device}"
                  + (f" x {self.ctx.world_size} processes" if self.ctx.distributed else "")
                  + f"\nrun folder: {self.run_dir}")
        if cfg.run.tensorboard:
            rep.open_tensorboard(purge_step=self.step if self.step else None)
        status = "completed"
        try:
            with _Stop(rep) as stopper, rep.progress() as progress:
                while self.epoch < tc.epochs:
                    reason = self.train_epoch(progress, stopper)
                    what = f"loss is not finite at epoch {self.epoch + 1}, step {self.step + 1}"
                    if reason != "nan_loss" and not self._state_is_finite():
                        # a finite loss can still leave inf/NaN weights or BN statistics
                        # behind; such a state never becomes a checkpoint
                        reason = "nan_loss"
                        what = (f"weights or buffers are not finite after epoch "
                                f"{self.epoch + 1}, step {self.step}")
                    if reason == "nan_loss":
                        status = "nan_loss"
                        latest = self.ckpt_dir / ckpt.LATEST
                        rep.print(f"[red]{what}; stopped.[/] Last good checkpoint: "
                                  + (str(ckpt.resolve_checkpoint(self.run_dir))
                                     if latest.exists() else "none (first epoch)")
                                  + ". Lower train.lr or set train.grad_clip.")
                        break
                    if reason == "interrupted":
                        status = "interrupted"
                        path = self.save(f"interrupt_step_{self.step:08d}.safetensors")
                        rep.print(f"stopped; checkpoint written: {path}. Resume with "
                                  f"`membra train --resume {self.run_dir}`")
                        break
                    if reason == "max_steps":
                        status = "max_steps"
                        self.save(f"interrupt_step_{self.step:08d}.safetensors")
                        break
                    m = self.end_epoch()
                    if self.epoch % tc.checkpoint_every == 0 or self.epoch == tc.epochs:
                        self.save(f"epoch_{self.epoch:04d}.safetensors")
                    rep.log_epoch(m, self.model)
                    rep.epoch_line(m, tc.epochs)
                    if self._emit("epoch_end", metrics=m):
                        if self.epoch < tc.epochs:
                            status = "interrupted"
                            self.save(f"epoch_{self.epoch:04d}.safetensors")
                        break
                    if tc.max_steps and self.step >= tc.max_steps:
                        status = "max_steps"
                        break
        except BaseException:
            rep.close()
            self._discard_unused()
            raise
        rep.close()
        if self._discard_unused():
            rep.print(f"no epoch finished and no checkpoint was written: removed the run "
                      f"folder {self.run_dir}")
        return self.finish(status)

    def _discard_unused(self) -> bool:
        """Remove the folders this run created if it ends before finishing an epoch or writing
        a checkpoint, so a failed start leaves no empty run folder; True when removed."""
        if not self.created or self.saved or self.epoch > self.start_epoch:
            return False
        _remove_dirs(self.created, self.run_dir)
        return True

    def finish(self, status: str) -> dict:
        final = dict(self.history[-1]) if self.history else {}
        final.update(status=status, run_dir=str(self.run_dir), epochs_done=self.epoch,
                     steps_done=self.step)
        rep = self.reporter
        if self.history and self.ctx.is_main:
            rep.print(per_step_table(self.history[-1], self.cfg.eval.readout))
            ckpt.atomic_write_bytes(self.run_dir / "summary.json",
                                    (json.dumps(final, indent=2) + "\n").encode())
            from .plots import first_inputs, write_run_plots

            written = write_run_plots(
                self.run_dir, self.history, self.model, num_classes=self.info.num_classes,
                sample=first_inputs(self.test_ds).to(self.ctx.device)) \
                if self.cfg.run.plots else []
            if written:
                rep.print(f"plots: {', '.join(p.name for p in written)} in "
                          f"{self.run_dir / 'plots'}")
        self._emit("fit_end", metrics=final)
        return final


def fit(cfg, *, run_dir=None, resume=None, device=None, model=None, loss_fn=None,
        callbacks=()) -> dict:
    """Train ``cfg`` (a :class:`RunConfig`, a TOML path, or ``None`` with ``resume``) and
    return the final metrics.

    Args:
        cfg: the run config.
        run_dir: run folder (default ``<run.out_dir>/<run.name>``, or the resumed run's).
        resume: a run folder or checkpoint file to continue from (bit-identical to the
            uninterrupted run).
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
        model: a prebuilt module mapping ``[T, B, *in_shape] -> [T, B, K]`` instead of
            ``membra.models.create_model``.
        loss_fn: ``loss(outputs [T, B, K], target) -> scalar`` instead of ``train.loss``.
        callbacks: callables ``cb(event, info)``; see the module doc.

    Returns:
        the last epoch's metrics (``test_acc``, ``test_acc_per_step``, ...) plus ``status``
        (``"completed"``, ``"interrupted"``, ``"nan_loss"``, ``"max_steps"``) and
        ``run_dir``.

    Example::

        metrics = fit(load_config("configs/digits_imp_lts.toml"), device="cpu")
    """
    loaded = ckpt.load_run_checkpoint(resume) if resume is not None else None
    if cfg is None:
        if loaded is None:
            raise ValueError("fit needs a config (or resume= a run folder to take it from)")
        cfg = config_from_dict(loaded[2]["config"])
    cfg = _as_config(cfg)
    threads = torch.get_num_threads()
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    ctx = setup(device, timeout_s=cfg.run.ddp_timeout_s)
    try:
        return _Trainer(cfg, ctx, run_dir, loaded, model, loss_fn, callbacks).run()
    except (RuntimeError, MemoryError) as err:
        # a silent peer or an allocation the config cannot get: say which rank / which keys
        named = peer_failure(ctx, err) or memory_error(cfg, err)
        if named is None:
            raise
        raise named from err
    finally:
        teardown(ctx)
        torch.set_num_threads(threads)


def evaluate_run(run_dir, *, checkpoint=None, device=None, model=None, show: bool = True,
                 plots: bool = False, plots_out=None) -> dict:
    """Re-evaluate a saved run on its test split: loads the model with
    :func:`~membra.train.runs.load_run` (default: the run's latest checkpoint; ``model`` for a
    run of ``fit(cfg, model=...)``), builds the test split from the stored config and prints
    the per-step table. With ``plots``, writes the run's plots
    (:func:`membra.train.plots.write_run_plots`, traces of the first test inputs) to
    ``plots_out`` (default ``<run>/plots``); ``ev["plots"]`` lists them.
    """
    if plots:
        from ..plotting import require_matplotlib

        require_matplotlib()
    ctx = DistContext(device=setup(device).device)
    run = load_run(run_dir, checkpoint=checkpoint, model=model, device=ctx.device)
    cfg, path, bad, model = run.config, run.checkpoint, run.non_finite, run.model
    if bad:  # evaluating such weights gives meaningless numbers: say so before them
        text = (f"checkpoint {str(path)!r} holds weights that are not finite: "
                f"{', '.join(bad)}; its outputs and accuracies are meaningless")
        if show:
            from rich.console import Console

            Console(stderr=True, soft_wrap=True).print(f"warning: {text}", style="bold red",
                                                       markup=False, highlight=False)
        else:
            warnings.warn(text, RuntimeWarning, stacklevel=2)
    rng.seed_everything(cfg.run.seed)
    _, test_ds = build_datasets(cfg)
    from .loop import build_loss

    loader = torch.utils.data.DataLoader(test_ds, batch_size=cfg.data.eval_batch_size,
                                         shuffle=False, num_workers=cfg.data.num_workers)
    ev = evaluate(model, loader, build_loss(cfg.train), ctx.device)
    ev.update(readout=cfg.eval.readout, test_acc=ev[f"test_acc_{cfg.eval.readout}"],
              checkpoint=str(path), epoch=run.meta["epoch"], step=run.meta["step"],
              non_finite=bad, model=run.model_name)
    from ..energy import sops

    x_first, _ = next(iter(loader))  # synaptic operations per sample, on the first test batch
    with torch.no_grad():
        energy = sops(model.eval(), x_first.to(ctx.device).transpose(0, 1))
    ev["energy"] = energy.as_dict()
    if plots:
        from .plots import TRACE_SAMPLES, write_run_plots

        folder = ckpt.run_folder_of(path) or Path(run_dir)
        ev["plots"] = [str(p) for p in write_run_plots(
            folder, run.meta["history"], model, num_classes=run.num_classes, out=plots_out,
            sample=x_first[:TRACE_SAMPLES].to(ctx.device).transpose(0, 1))]
    if show:
        from rich.console import Console

        console = Console()
        console.print(f"model: {run.model_name}" + (" (custom)" if run.custom_model else ""),
                      markup=False, highlight=False)
        console.print(per_step_table(ev, cfg.eval.readout,
                                     title=f"{path.name}: test accuracy per time step"))
        console.print(f"synaptic operations per sample ({energy.batch} test samples, "
                      "45 nm: 4.6 pJ/MAC, 0.9 pJ/SOP; conventions in docs/energy.md):")
        console.print(energy.to_markdown(), markup=False, highlight=False, soft_wrap=True)
    return ev
