"""The training engine: :func:`fit` runs a config end to end, :func:`evaluate_run`
re-evaluates a saved run.

A run folder ``<run.out_dir>/<run.name>/`` holds ``config.toml`` (resolved), ``metrics.jsonl``
(one JSON line per epoch), ``checkpoints/`` (``epoch_NNNN.safetensors`` and a ``latest``
pointer), ``tb/`` (TensorBoard events, if installed), ``plots/*.png`` and ``summary.json``.

Exact resume: the data order of epoch ``e`` depends only on ``(run.seed, e)``, and a
checkpoint stores weights, optimizer state, the step, the position inside the epoch, the
running sums of the epoch and every RNG state; resuming therefore reproduces the
uninterrupted run bit for bit on the same machine.

The pieces: :mod:`.build` makes a :class:`~.build.Run` (model, data, optimizer, schedule
inputs) and the run folder, :mod:`.state` holds the :class:`~.state.RunState` and
:class:`~.state.RunStatus`, :mod:`.callbacks` everything a run does besides training
(checkpoints, ``metrics.jsonl``, TensorBoard, progress, plots, and the user's callbacks),
:mod:`.loop` the schedule, loss and evaluation, :mod:`.console` what a run prints. This
module is the loop that ties them: one optimizer step per batch with a single host
synchronisation (the loss's finiteness and the epoch's running sums, read together).

Length (about 500 lines): the loop stays in one class because its parts share the run's
state; ``build_datasets``/``build_model`` stay here because tests and other packages replace
or import them from this module, and ``evaluate_run`` is due to move beside ``load_run``.
"""

from __future__ import annotations

import json
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
from .build import (
    Run,
    build_run,
    check_resume_config,
    make_run_dir,
    prepare_run_dir,
    remove_dirs,
)
from .callbacks import Checkpoints, MetricsLog, Plots, Progress, TensorBoard, as_callback
from .config import RunConfig, config_from_dict, dump_config, load_config, memory_error
from .console import Console, per_step_table
from .distributed import (
    DistContext,
    all_reduce_sum,
    broadcast_object,
    peer_failure,
    setup,
    teardown,
)
from .loop import ShardSampler, SkipSampler, evaluate, labels_of, learning_rate
from .runs import load_run, model_info
from .state import RunState, RunStatus

__all__ = ["fit", "evaluate_run", "build_datasets", "build_model", "prepare_run_dir",
           "RunStatus"]


# ---- building blocks (replaceable: the engine looks them up here at run time) ------------
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


def _as_config(cfg) -> RunConfig:
    if isinstance(cfg, RunConfig):
        return cfg
    if isinstance(cfg, (str, Path)):
        return load_config(cfg)
    if isinstance(cfg, dict):
        return config_from_dict(cfg)
    raise TypeError(f"cfg must be a RunConfig, a TOML path or a dict, got {type(cfg).__name__}")


class _Stop:
    """Ctrl-C (SIGINT) handling: the first press asks for a clean stop, the second aborts."""

    def __init__(self, console: Console):
        self.requested = False
        self.console = console
        self._old = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.console.print("\n[yellow]Ctrl-C: finishing this batch and writing a checkpoint "
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
        user = [as_callback(cb) for cb in callbacks]
        resume_path = loaded[0] if loaded is not None else None
        if loaded is not None:
            check_resume_config(loaded[2]["config"], cfg, resume_path)
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
            run_dir, self.created = make_run_dir(Path(run_dir), fresh, avoid)
        self.run_dir = Path(broadcast_object(str(run_dir), ctx))
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.console = Console(ctx.is_main, cfg.run.progress)
        self.checkpoints = Checkpoints()
        try:
            self._build(model, loss_fn, loaded)
        except BaseException:
            remove_dirs(self.created, self.run_dir)
            raise
        self.callbacks = [self.checkpoints, MetricsLog(), TensorBoard(), Progress(self.console),
                          Plots(self.console), *user]
        self.start_epoch = self.state.epoch
        if ctx.is_main:  # everything checked: the run's first writes
            ckpt.clean_stale_temps(self.ckpt_dir)
            ckpt.atomic_write_bytes(self.run_dir / "config.toml", dump_config(cfg).encode())

    def _build(self, model, loss_fn, loaded) -> None:
        cfg, ctx = self.cfg, self.ctx
        if cfg.run.plots and ctx.is_main:  # say so before training, not after it
            from ..plotting import require_matplotlib

            require_matplotlib()
        rng.seed_everything(cfg.run.seed)
        datasets = build_datasets(cfg)
        info = _info(datasets[0])
        custom = model_info(info.in_shape, info.num_classes, model)  # before the zoo builds one
        if model is None:
            model = build_model(cfg, info)
        self.run: Run = build_run(cfg, ctx, self.run_dir, datasets, model, info, loss_fn)
        self.run.model_info = custom
        if cfg.train.amp and not self.run.amp:
            self.console.print("[yellow]train.amp needs CUDA; training in float32 on "
                               f"{ctx.device}[/]")
        self.state = RunState(device=ctx.device)
        if loaded is not None:
            self._restore(*loaded)

    def _restore(self, path: Path, tensors: dict, meta: dict) -> None:
        """Continue from a verified checkpoint (:func:`checkpoint.load_run_checkpoint`)."""
        run = self.run
        model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        ckpt.load_model_state(run.model, model_state, source=f"checkpoint {str(path)!r}")
        try:
            run.optimizer.load_state_dict(ckpt.unflatten_state(meta["optimizer"], tensors))
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as err:
            raise ValueError(f"checkpoint {str(path)!r}: optimizer state does not match "
                             f"({err})") from None
        if run.amp and meta.get("scaler"):
            run.scaler.load_state_dict(meta["scaler"])
        if meta.get("world_size", 1) != self.ctx.world_size and meta["batch_in_epoch"]:
            raise ValueError(f"checkpoint {str(path)!r} stopped inside an epoch with "
                             f"{meta['world_size']} processes; resume it with as many")
        if meta["batch_in_epoch"] > run.steps_per_epoch:
            raise ValueError(f"checkpoint {str(path)!r}: metadata 'batch_in_epoch' "
                             f"({meta['batch_in_epoch']}) exceeds the {run.steps_per_epoch} "
                             "batches of an epoch")
        self.state.load_meta(meta)
        rng.restore(tensors, meta["rng"])
        self.console.print(f"resumed from {path} (epoch {self.state.epoch}, step "
                           f"{self.state.step})")
        if self.loose:
            self.console.print(f"{path} is not inside a run folder, so this run writes a new "
                               f"run folder {self.run_dir} (nothing is written beside the "
                               "file)")

    def _state_is_finite(self) -> bool:
        """All floating-point parameters and buffers finite (on every rank)."""
        bad = any(not bool(torch.isfinite(t).all()) for t in self.run.model.state_dict().values()
                  if t.is_floating_point())
        (bad,) = self._flags(bad)
        return not bad

    def save(self, name: str) -> Path | None:
        return self.checkpoints.save(self.run, self.state, name)

    # ---- hooks -------------------------------------------------------------------------
    def _hook(self, name: str, *args) -> bool:
        """Call hook ``name`` of every callback (all of them); True if any asks to stop."""
        stop = False
        for cb in self.callbacks:
            stop |= bool(getattr(cb, name)(self.run, self.state, *args))
        return stop

    def _teardown(self) -> None:
        for cb in self.callbacks:
            cb.teardown(self.run, self.state)

    # ---- one epoch ---------------------------------------------------------------------
    def _loader(self, ds, sampler, batch):
        return torch.utils.data.DataLoader(
            ds, batch_size=batch, sampler=sampler, num_workers=self.cfg.data.num_workers,
            pin_memory=self.ctx.device.type == "cuda", drop_last=False,
            generator=torch.Generator().manual_seed(self.cfg.run.seed * 100_003
                                                    + self.state.epoch))

    def _flags(self, *flags: bool) -> list[bool]:
        """Agree on stop/NaN flags across ranks (any rank -> all)."""
        if not self.ctx.distributed:
            return list(flags)
        return [v > 0 for v in all_reduce_sum([float(f) for f in flags], self.ctx).tolist()]

    def train_epoch(self, stopper: _Stop) -> RunStatus | None:
        """Train the rest of the current epoch; returns ``None`` when it ends normally, else
        :attr:`RunStatus.INTERRUPTED`, :attr:`~RunStatus.NAN_LOSS` or
        :attr:`~RunStatus.MAX_STEPS`."""
        run, st, tc, dev = self.run, self.state, self.cfg.train, self.ctx.device
        run.sampler.set_epoch(st.epoch)
        if hasattr(run.train_ds, "set_epoch"):  # per-epoch Poisson encoding / augmentation
            run.train_ds.set_epoch(st.epoch)
        sampler = SkipSampler(run.sampler, st.batch_in_epoch * run.batch)
        loader = self._loader(run.train_ds, sampler, run.batch)
        self._hook("on_epoch_start")
        run.net.train()
        t_last = time.perf_counter()
        for x, y in loader:
            x = x.to(dev, non_blocking=True).transpose(0, 1)
            y = y.to(dev, non_blocking=True)
            lr = learning_rate(tc, st.step, run.total_steps, run.steps_per_epoch)
            for g in run.optimizer.param_groups:
                g["lr"] = lr
            with torch.autocast(dev.type, enabled=run.amp):
                out = run.net(x)
                loss = run.loss_fn(out, y)
            pred = readout_fn(out.detach().float(), self.cfg.eval.readout).argmax(-1)
            sums = st.with_batch(loss, (pred == labels_of(y)).sum(), y.shape[0])
            # the step's one host sync: is the loss finite, its value, the epoch's sums
            synced = torch.cat([(~torch.isfinite(loss.detach())).double().view(1),
                                loss.detach().double().view(1), sums]).tolist()
            (nan,) = self._flags(synced[0] > 0)
            if nan:
                return RunStatus.NAN_LOSS
            st.sums, st.logged = sums, synced[2:]
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            if tc.grad_clip > 0:
                run.scaler.unscale_(run.optimizer)
                nn.utils.clip_grad_norm_(run.model.parameters(), tc.grad_clip)
            run.scaler.step(run.optimizer)
            run.scaler.update()
            st.step += 1
            st.batch_in_epoch += 1
            now = time.perf_counter()
            st.seen_time += now - t_last
            t_last = now
            stop = self._hook("on_step_end", synced[1])
            done = tc.max_steps and st.step >= tc.max_steps
            (stop,) = self._flags(stop or stopper.requested)
            if stop or done:
                last = st.batch_in_epoch >= run.steps_per_epoch
                if done and last:
                    return None
                return RunStatus.INTERRUPTED if stop else RunStatus.MAX_STEPS
        st.seen_time += time.perf_counter() - t_last
        return None

    def end_epoch(self) -> dict:
        """Evaluate, close the epoch's sums into its metrics and count the epoch."""
        run, st = self.run, self.state
        sums = all_reduce_sum(st.sums, self.ctx).tolist()
        eval_loader = self._loader(
            run.test_ds, ShardSampler(len(run.test_ds), self.ctx.rank, self.ctx.world_size),
            self.cfg.data.eval_batch_size // self.ctx.world_size)
        reduce = (lambda v: all_reduce_sum(v, self.ctx)) if self.ctx.distributed else None
        ev = evaluate(run.model, eval_loader, run.loss_fn, self.ctx.device, reduce, run.amp)
        mode = self.cfg.eval.readout
        m = {"epoch": st.epoch + 1, "step": st.step,
             "lr": run.optimizer.param_groups[0]["lr"],
             "train_loss": sums[0] / sums[2], "train_acc": sums[1] / sums[2],
             "readout": mode, "test_acc": ev[f"test_acc_{mode}"], **ev,
             "samples_per_s": sums[2] / max(st.seen_time, 1e-9),
             "epoch_time_s": st.seen_time}
        st.history.append(m)
        st.start_epoch()
        return m

    # ---- the run -----------------------------------------------------------------------
    def run_epochs(self, stopper: _Stop) -> RunStatus:
        """Train epochs until the last, a stop request, a non-finite state or max_steps."""
        tc, st, say = self.cfg.train, self.state, self.console.print
        while st.epoch < tc.epochs:
            reason = self.train_epoch(stopper)
            what = f"loss is not finite at epoch {st.epoch + 1}, step {st.step + 1}"
            if reason != RunStatus.NAN_LOSS and not self._state_is_finite():
                # a finite loss can still leave inf/NaN weights or BN statistics
                # behind; such a state never becomes a checkpoint
                reason = RunStatus.NAN_LOSS
                what = (f"weights or buffers are not finite after epoch {st.epoch + 1}, "
                        f"step {st.step}")
            if reason == RunStatus.NAN_LOSS:
                latest = self.ckpt_dir / ckpt.LATEST
                say(f"[red]{what}; stopped.[/] Last good checkpoint: "
                    + (str(ckpt.resolve_checkpoint(self.run_dir)) if latest.exists()
                       else "none (first epoch)") + ". Lower train.lr or set train.grad_clip.")
                return reason
            if reason is not None:  # interrupted or max_steps inside the epoch
                path = self.save(f"interrupt_step_{st.step:08d}.safetensors")
                if reason == RunStatus.INTERRUPTED:
                    say(f"stopped; checkpoint written: {path}. Resume with "
                        f"`membra train --resume {self.run_dir}`")
                return reason
            m = self.end_epoch()
            if self._hook("on_epoch_end", m):
                if st.epoch < tc.epochs:
                    self.save(f"epoch_{st.epoch:04d}.safetensors")
                    return RunStatus.INTERRUPTED
                break
            if tc.max_steps and st.step >= tc.max_steps:
                return RunStatus.MAX_STEPS
        return RunStatus.COMPLETED

    def run_fit(self) -> dict:
        cfg, tc = self.cfg, self.cfg.train
        self.console.print(
            f"[bold]membra train[/] {cfg.run.name}: {cfg.data.name} (T={cfg.data.T}) -> "
            + (f"{type(self.run.model).__name__} (custom)" if self.run.model_info["custom"]
               else f"{cfg.model.name} ({cfg.model.neuron})") + f", loss {tc.loss}, readout "
            f"{cfg.eval.readout}, {tc.epochs} epochs on {self.ctx.device}"
            + (f" x {self.ctx.world_size} processes" if self.ctx.distributed else "")
            + f"\nrun folder: {self.run_dir}")
        try:
            self._hook("on_fit_start")
            with _Stop(self.console) as stopper:
                status = self.run_epochs(stopper)
        except BaseException:
            self._teardown()
            self._discard_unused()
            raise
        self._teardown()
        if self._discard_unused():
            self.console.print(f"no epoch finished and no checkpoint was written: removed the "
                               f"run folder {self.run_dir}")
        return self.finish(status)

    def _discard_unused(self) -> bool:
        """Remove the folders this run created if it ends before finishing an epoch or writing
        a checkpoint, so a failed start leaves no empty run folder; True when removed."""
        if not self.created or self.checkpoints.saved or self.state.epoch > self.start_epoch:
            return False
        remove_dirs(self.created, self.run_dir)
        return True

    def finish(self, status: RunStatus) -> dict:
        """The summary: the last epoch's metrics, ``status``, ``run_dir``, ``epochs_done``,
        ``steps_done``, plus what ``on_fit_end`` hooks add; written to ``summary.json``."""
        st = self.state
        final = dict(st.history[-1]) if st.history else {}
        final.update(status=status.value, run_dir=str(self.run_dir), epochs_done=st.epoch,
                     steps_done=st.step)
        if st.history and self.ctx.is_main:
            self.console.print(per_step_table(st.history[-1], self.cfg.eval.readout))
        self._hook("on_fit_end", final)
        if st.history and self.ctx.is_main:
            ckpt.atomic_write_bytes(self.run_dir / "summary.json",
                                    (json.dumps(final, indent=2) + "\n").encode())
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
        callbacks: :class:`membra.train.callbacks.Callback` objects (or functions
            ``cb(event, info)``), run after the built-in ones.

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
        return _Trainer(cfg, ctx, run_dir, loaded, model, loss_fn, callbacks).run_fit()
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
