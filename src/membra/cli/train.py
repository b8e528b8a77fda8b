"""``membra train``, ``membra eval`` and ``membra config-keys``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app


def _resolve_config(config: Path | None, set_: list[str], resume: Path | None):
    """The run config of ``membra train``: ``CONFIG`` plus ``--set`` overrides, or the one
    stored in the ``--resume`` checkpoint."""
    from ..train import load_config

    if config is None:
        if resume is None:
            raise ValueError("give a CONFIG file (e.g. configs/digits_imp_lts.toml) or "
                             "--resume RUN_DIR")
        from ..train.checkpoint import load_run_checkpoint
        from ..train.config import apply_overrides, config_from_dict

        saved = load_run_checkpoint(resume)[2]["config"]
        cfg = config_from_dict(apply_overrides(saved, set_))
    else:
        cfg = load_config(config, set_)
    return cfg


@app.command()
def train(
    config: Annotated[Optional[Path], typer.Argument(  # noqa: UP045 (typer needs Optional)
        help="TOML run file (optional with --resume).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
        "--set", help="Override: section.key=value (repeat).")] = None,
    resume: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--resume", help="Run folder or checkpoint to continue.")] = None,
    device: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--device", help="cpu | cuda (default: cuda if present).")] = None,
    nproc: Annotated[int, typer.Option(
        "--nproc", min=1, help="Processes (runs torchrun; gloo on CPU, nccl on CUDA).")] = 1,
) -> None:
    """Train a spiking network from a TOML run config.

    Examples:

      membra train configs/digits_imp_lts.toml

      membra train configs/digits_imp_lts.toml --set train.epochs=3 --set run.name=quick

      membra train --resume runs/digits_imp_lts

      membra train configs/digits_imp_lts.toml --nproc 2
    """
    set_ = list(set_ or [])
    # resolved before any process starts, so a bad config is one error line, printed once
    # (the CLI's error boundary prints what is raised here)
    cfg = _resolve_config(config, set_, resume)
    if nproc > 1:
        from ..train.config import check_runnable
        from ..train.distributed import launch

        check_runnable(cfg, nproc)
        args = ["train"] + ([str(config)] if config is not None else [])
        for s in set_:
            args += ["--set", s]
        if resume is not None:
            args += ["--resume", str(resume)]
        if device is not None:
            args += ["--device", device]
        raise typer.Exit(launch(args, nproc))
    from ..train import fit

    result = fit(cfg, resume=resume, device=device)
    status = result.get("status")
    if status == "interrupted":
        raise typer.Exit(130)
    if status == "nan_loss":
        raise typer.Exit(3)


@app.command("eval")
def eval_(
    run_dir: Annotated[Path, typer.Argument(help="Run folder (runs/<name>).")],
    checkpoint: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--checkpoint", help="Checkpoint file to use (default: the run's latest).")] = None,
    device: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--device", help="cpu | cuda.")] = None,
    plots: Annotated[bool, typer.Option(
        "--plots", help="Also write the run's plots: curves, per-step accuracy, V_0 "
        "histogram, and spike raster, membrane potentials, rate heatmap and dead/saturated "
        "neurons on the first test inputs (needs membra[plot]).")] = False,
    out: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        "--out", help="Folder for --plots (default: RUN/plots).")] = None,
) -> None:
    """Re-evaluate a trained run on its test split and print per-step accuracy.

    Example: membra eval runs/digits_imp_lts --plots
    """
    from ..train import evaluate_run
    from ._runs import notes

    with notes():
        ev = evaluate_run(run_dir, checkpoint=checkpoint, device=device, plots=plots,
                          plots_out=out)
    if plots:
        typer.echo(f"plots: {len(ev['plots'])} files in "
                   f"{Path(ev['plots'][0]).parent if ev['plots'] else out}")


@app.command("config-keys")
def config_keys() -> None:
    """Print every run-config key with its type, default, valid values and meaning (a
    Markdown table, the one in docs/training.md).

    Example: membra config-keys
    """
    from ..train.config import keys_markdown

    typer.echo(keys_markdown())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
