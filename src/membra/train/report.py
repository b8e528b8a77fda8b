"""What a run shows and leaves behind: the per-epoch progress bar and summary line, the
end-of-run per-step accuracy table, ``metrics.jsonl`` and TensorBoard events."""

from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import atomic_write_bytes

__all__ = ["Reporter", "per_step_table", "NullProgress"]


class NullProgress:
    """Stand-in for a progress bar on ranks > 0 or with ``run.progress = false``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass


def per_step_table(metrics: dict, readout: str, title: str = "test accuracy per time step"):
    """A rich table (each step alone, the mean readout over steps 1..t) followed by the
    mean, last-step and reported readout accuracies."""
    from rich.console import Group
    from rich.table import Table

    per_step = metrics["test_acc_per_step"]
    cum = metrics["test_acc_cumulative"]
    table = Table(title=f"{title} (%)")
    table.add_column("readout")
    for t in range(len(per_step)):
        table.add_column(f"t={t + 1}", justify="right")
    table.add_row("step t alone", *(f"{100 * a:.1f}" for a in per_step))
    table.add_row("mean of steps 1..t", *(f"{100 * a:.1f}" for a in cum))
    line = (f"mean readout {100 * metrics['test_acc_mean']:.2f}%  |  last-step readout "
            f"{100 * metrics['test_acc_last']:.2f}%  |  reported (eval.readout={readout!r}) "
            f"{100 * metrics['test_acc']:.2f}%")
    return Group(table, line)


class Reporter:
    """Console, ``metrics.jsonl`` and TensorBoard output of rank 0 (silent elsewhere)."""

    def __init__(self, run_dir: Path | None, enabled: bool, progress: bool):
        self.run_dir = run_dir
        self.enabled = enabled
        self.progress_enabled = enabled and progress
        self.console = None
        self.tb = None
        if enabled:
            from rich.console import Console

            self.console = Console()

    # ---- console ---------------------------------------------------------------------------
    def print(self, *args, **kw) -> None:
        if self.console is not None:
            kw.setdefault("soft_wrap", True)
            self.console.print(*args, **kw)

    def progress(self):
        if not self.progress_enabled:
            return NullProgress()
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), console=self.console, transient=True)

    def epoch_line(self, m: dict, epochs: int) -> None:
        self.print(f"epoch {m['epoch']:>3}/{epochs}  loss {m['train_loss']:.4f}  "
                   f"train {100 * m['train_acc']:5.1f}%  test {100 * m['test_acc']:5.1f}% "
                   f"({m['readout']})  lr {m['lr']:.2e}  {m['samples_per_s']:,.0f} samples/s  "
                   f"{m['epoch_time_s']:.1f}s")

    # ---- files -----------------------------------------------------------------------------
    def open_tensorboard(self, purge_step: int | None = None) -> None:
        """TensorBoard events under ``<run_dir>/tb`` if the ``tensorboard`` package is
        installed (``pip install membra[log]``); skipped quietly otherwise."""
        if not self.enabled or self.run_dir is None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return
        self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)

    def write_history(self, history: list[dict]) -> None:
        """Rewrite ``metrics.jsonl`` from ``history`` (used when resuming)."""
        if self.enabled and self.run_dir is not None:
            atomic_write_bytes(self.run_dir / "metrics.jsonl",
                               "".join(json.dumps(m) + "\n" for m in history).encode())

    def log_epoch(self, m: dict, model=None) -> None:
        if not self.enabled or self.run_dir is None:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(m) + "\n")
        if self.tb is None:
            return
        step = m["step"]
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "test_acc_mean",
                    "test_acc_last", "lr", "samples_per_s"):
            self.tb.add_scalar(key.replace("_", "/", 1), m[key], step)
        for t, a in enumerate(m["test_acc_per_step"]):
            self.tb.add_scalar(f"test/acc_step_{t + 1}", a, step)
        for name, r in m["firing_rate"].items():
            self.tb.add_scalar(f"firing_rate/{name}", r, step)
        if model is not None:
            for name, p in model.named_parameters():
                if name.endswith("init_potential"):
                    self.tb.add_histogram(f"init_potential/{name}", p.detach().float().cpu(),
                                          step)
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
