"""Load the model of a run folder for the CLI: a ``membra train`` run (``config.toml`` +
``checkpoints/``, or a checkpoint file) through :func:`membra.train.load_run`; IMP-study runs
are such runs."""

from __future__ import annotations

import contextlib
from pathlib import Path


@contextlib.contextmanager
def notes():
    """Inside: each Python warning (e.g. load_run's note on a run written by an older membra)
    is one ``note: <message>`` line on stderr, not Python's two-line warning format."""
    import warnings

    import typer

    old = warnings.showwarning
    warnings.showwarning = lambda message, *_a, **_k: typer.echo(f"note: {message}", err=True)
    try:
        yield
    finally:
        warnings.showwarning = old


def load_cli_run(path: Path):
    """:func:`membra.train.load_run` of a run folder or checkpoint file, its notes as
    ``note:`` lines; a missing path is a ``FileNotFoundError`` naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"run folder or checkpoint not found: {path}")
    from ..train import load_run

    with notes():
        return load_run(path)


def load_run_model(path: Path):
    """``(model in eval mode, in_shape, model name)`` of a run folder or checkpoint file."""
    run = load_cli_run(path)
    return run.model, run.in_shape, run.model_name
