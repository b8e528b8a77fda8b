"""Callbacks: what a run does besides training, as small objects with typed hooks.

A callback subclasses :class:`Callback` and overrides the hooks it needs; every hook gets
the built :class:`~membra.train.build.Run` (config, model, optimizer, datasets, run
folder, ``is_main``) and the :class:`~membra.train.state.RunState` (epoch, step, sums,
history). The engine calls them in this order::

    on_fit_start(run, state)                 once, before the first batch (also on resume)
    on_epoch_start(run, state)               before each epoch's (remaining) batches
    on_step_end(run, state, loss)            after each optimizer step; loss: a float
    on_epoch_end(run, state, metrics)        after the epoch's evaluation; metrics: a dict
    teardown(run, state)                     when training stops, normally or by an error
    on_fit_end(run, state, summary)          at the end; entries added to ``summary`` are
                                             written to summary.json and returned by fit

``on_step_end`` and ``on_epoch_end`` may return ``True`` to ask the run to stop as Ctrl-C
does (checkpoint, then return with status ``interrupted``). Hooks run on every process;
a callback that writes files checks ``run.is_main``. Numbers a hook reads from
``state`` (``state.logged``: ``[sum of loss * B, correct, samples]`` of the epoch so far,
this process) are host floats already; reading them costs no device synchronisation.

:func:`membra.train.fit` runs the built-in callbacks first (:class:`Checkpoints`,
:class:`MetricsLog`, :class:`TensorBoard`, :class:`Progress`, :class:`Plots`), then the
user's ``callbacks=``. A plain function ``cb(event, info)`` is accepted too
(:class:`FunctionCallback`: events ``"batch_end"``, ``"epoch_end"``, ``"fit_end"``; ``info``
holds ``epoch``, ``step``, ``model``, ``optimizer`` and ``loss`` / ``metrics``).

Example, a callback that stops when the test accuracy reaches 95%::

    class StopAt95(Callback):
        def on_epoch_end(self, run, state, metrics):
            return metrics["test_acc"] >= 0.95

    fit(cfg, callbacks=[StopAt95()])
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import checkpoint as ckpt
from . import rng
from .build import Run
from .config import config_to_dict
from .console import Console
from .state import RunState

__all__ = ["Callback", "FunctionCallback", "Checkpoints", "MetricsLog", "TensorBoard",
           "Progress", "Plots", "as_callback"]


class Callback:
    """Base class: every hook does nothing (see the module doc for their order)."""

    def on_fit_start(self, run: Run, state: RunState) -> None:
        """Before the first batch of this call of ``fit`` (also when resuming)."""

    def on_epoch_start(self, run: Run, state: RunState) -> None:
        """Before the (remaining) batches of epoch ``state.epoch + 1``."""

    def on_step_end(self, run: Run, state: RunState, loss: float) -> bool | None:
        """After optimizer step ``state.step``; ``True`` asks the run to stop."""

    def on_epoch_end(self, run: Run, state: RunState, metrics: dict) -> bool | None:
        """After epoch ``metrics["epoch"]`` and its evaluation; ``True`` asks the run to
        stop."""

    def teardown(self, run: Run, state: RunState) -> None:
        """Training stopped (normally or by an exception): release what the callback holds."""

    def on_fit_end(self, run: Run, state: RunState, summary: dict) -> None:
        """The run ended with ``summary["status"]``; may add entries to ``summary``."""


class FunctionCallback(Callback):
    """A function ``fn(event, info)`` as a callback (the older callback form)."""

    def __init__(self, fn):
        self.fn = fn

    def _call(self, event: str, run: Run, state: RunState, **info) -> bool:
        return bool(self.fn(event, {"epoch": state.epoch, "step": state.step,
                                    "model": run.model, "optimizer": run.optimizer, **info}))

    def on_step_end(self, run, state, loss):
        return self._call("batch_end", run, state, loss=loss)

    def on_epoch_end(self, run, state, metrics):
        return self._call("epoch_end", run, state, metrics=metrics)

    def on_fit_end(self, run, state, summary):
        self._call("fit_end", run, state, metrics=summary)


def as_callback(cb) -> Callback:
    """``cb`` itself if it is a :class:`Callback`, a :class:`FunctionCallback` around a
    callable, else ``TypeError``."""
    if isinstance(cb, Callback):
        return cb
    if callable(cb):
        return FunctionCallback(cb)
    raise TypeError(f"a callback must be a membra.train.callbacks.Callback or a function "
                    f"cb(event, info), got {type(cb).__name__}")


class Checkpoints(Callback):
    """Writes ``checkpoints/epoch_NNNN.safetensors`` every ``train.checkpoint_every`` epochs
    and after the last, keeps ``train.keep_checkpoints``, and writes the interrupt
    checkpoints the engine asks for (:meth:`save`). A checkpoint holds the weights, the
    optimizer state and every RNG state as tensors, and the config, the
    :class:`RunState` and the scheduler position as metadata."""

    def __init__(self):
        self.saved = False

    def on_epoch_end(self, run, state, metrics):
        every, epochs = run.cfg.train.checkpoint_every, run.cfg.train.epochs
        if state.epoch % every == 0 or state.epoch == epochs:
            self.save(run, state, f"epoch_{state.epoch:04d}.safetensors")

    @staticmethod
    def contents(run: Run, state: RunState) -> tuple[dict, dict]:
        """``(tensors, metadata)`` of a checkpoint of ``run`` at ``state``."""
        tensors = {f"model.{k}": v for k, v in run.model.state_dict().items()}
        opt_t, opt_skel = ckpt.flatten_state(run.optimizer.state_dict(), "optim")
        rng_t, rng_meta = rng.capture()
        tensors.update(opt_t)
        tensors.update(rng_t)
        meta = {
            "config": config_to_dict(run.cfg), **state.to_meta(), "optimizer": opt_skel,
            "scheduler": {"kind": run.cfg.train.schedule, "step": state.step,
                          "total_steps": run.total_steps},
            "scaler": run.scaler.state_dict() if run.amp else None,
            "rng": rng_meta, "world_size": run.ctx.world_size, "torch": torch.__version__,
            "model_info": run.model_info,
        }
        return tensors, meta

    def save(self, run: Run, state: RunState, name: str) -> Path | None:
        """Write checkpoint ``name`` (rank 0), point ``latest`` at it, prune older ones."""
        path = None
        if run.is_main:
            tensors, meta = self.contents(run, state)
            ckpt_dir = run.run_dir / "checkpoints"
            path = ckpt.save_checkpoint(ckpt_dir / name, tensors, meta)
            ckpt.write_latest(ckpt_dir, name)
            self._prune(ckpt_dir, run.cfg.train.keep_checkpoints, keep=name)
        self.saved = True
        return path

    @staticmethod
    def _prune(ckpt_dir: Path, n: int, keep: str) -> None:
        """Keep the newest ``n`` epoch checkpoints (``keep`` among them; 0: all) and drop
        interrupt checkpoints other than ``keep``."""
        if n <= 0:
            return
        files = sorted(p for p in ckpt_dir.glob("epoch_*.safetensors") if p.name != keep)
        for p in files[: max(0, len(files) - (n - 1))]:
            p.unlink(missing_ok=True)
        for p in ckpt_dir.glob("interrupt_*.safetensors"):
            if p.name != keep:
                p.unlink(missing_ok=True)


class MetricsLog(Callback):
    """``metrics.jsonl``: one JSON line per finished epoch (rewritten from the checkpoint's
    history when a run resumes)."""

    def on_fit_start(self, run, state):
        if run.is_main and state.history:
            ckpt.atomic_write_bytes(run.run_dir / "metrics.jsonl",
                                    "".join(json.dumps(m) + "\n" for m in state.history).encode())

    def on_epoch_end(self, run, state, metrics):
        if run.is_main:
            with open(run.run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(metrics) + "\n")


class TensorBoard(Callback):
    """TensorBoard events under ``<run_dir>/tb`` (``run.tensorboard``; needs the
    ``tensorboard`` package, ``pip install membra[log]``, skipped quietly without it):
    losses, accuracies, per-step accuracy, firing rates, learning rate, throughput, and
    histograms of learnable initial potentials, per epoch at its last step."""

    _SCALARS = ("train_loss", "train_acc", "test_loss", "test_acc", "test_acc_mean",
                "test_acc_last", "lr", "samples_per_s")

    def __init__(self):
        self.writer = None

    def on_fit_start(self, run, state):
        if not (run.is_main and run.cfg.run.tensorboard):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self.writer = SummaryWriter(str(run.run_dir / "tb"),
                                    purge_step=state.step if state.step else None)

    def on_epoch_end(self, run, state, metrics):
        tb = self.writer
        if tb is None:
            return
        step = metrics["step"]
        for key in self._SCALARS:
            tb.add_scalar(key.replace("_", "/", 1), metrics[key], step)
        for t, a in enumerate(metrics["test_acc_per_step"]):
            tb.add_scalar(f"test/acc_step_{t + 1}", a, step)
        for name, r in metrics["firing_rate"].items():
            tb.add_scalar(f"firing_rate/{name}", r, step)
        for name, p in run.model.named_parameters():
            if name.endswith("init_potential"):
                tb.add_histogram(f"init_potential/{name}", p.detach().float().cpu(), step)
        tb.flush()

    def teardown(self, run, state):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Progress(Callback):
    """A progress bar per epoch (``run.progress``) with the running loss, accuracy and
    throughput, and one line per finished epoch, on rank 0."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = None
        self.task = None

    def on_fit_start(self, run, state):
        self.bar = self.console.progress().__enter__()

    def on_epoch_start(self, run, state):
        self.task = self.bar.add_task(f"epoch {state.epoch + 1}/{run.cfg.train.epochs}",
                                      total=run.steps_per_epoch,
                                      completed=state.batch_in_epoch, info="")

    def on_step_end(self, run, state, loss):
        loss_sum, correct, n = state.logged
        self.bar.update(self.task, advance=1, info=(
            f"loss {loss_sum / n:.4f}  acc {100 * correct / n:.1f}%  "
            f"{n * run.ctx.world_size / max(state.seen_time, 1e-9):,.0f} samples/s"))

    def on_epoch_end(self, run, state, metrics):
        self.console.epoch_line(metrics, run.cfg.train.epochs)

    def teardown(self, run, state):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


class Plots(Callback):
    """PNG plots of the run in ``<run_dir>/plots`` at the end (``run.plots``; needs
    matplotlib)."""

    def __init__(self, console: Console):
        self.console = console

    def on_fit_end(self, run, state, summary):
        if not (run.is_main and run.cfg.run.plots and state.history):
            return
        from .plots import first_inputs, write_run_plots

        written = write_run_plots(run.run_dir, state.history, run.model,
                                  num_classes=run.info.num_classes,
                                  sample=first_inputs(run.test_ds).to(run.ctx.device))
        if written:
            self.console.print(f"plots: {', '.join(p.name for p in written)} in "
                               f"{run.run_dir / 'plots'}")
