"""What a run prints: the progress bar of an epoch, the line per finished epoch and the
end-of-run per-step accuracy table (rank 0 only; files are written by
:mod:`membra.train.callbacks`)."""

from __future__ import annotations

__all__ = ["Console", "per_step_table", "NullProgress"]


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


class Console:
    """The console output of rank 0 (silent elsewhere, and bars off with
    ``run.progress = false``)."""

    def __init__(self, enabled: bool, progress: bool):
        self.enabled = enabled
        self.progress_enabled = enabled and progress
        self.console = None
        if enabled:
            from rich.console import Console as RichConsole

            self.console = RichConsole()

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

