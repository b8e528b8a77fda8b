"""``membra info``."""

from __future__ import annotations

import typer

from . import app


@app.command()
def info() -> None:
    """Show the version, torch, and which kernel backends can run here.

    Example: membra info
    """
    import torch

    from .. import __version__
    from ..kernels import available_backends, list_backends, select_backend

    typer.echo(f"membra {__version__}  torch {torch.__version__}")
    typer.echo(f"kernel backends: {', '.join(list_backends())}")
    typer.echo(f"available on cpu: {', '.join(available_backends('cpu'))}; default: "
               f"{select_backend(None, torch.device('cpu')).name}")
    if torch.cuda.is_available():
        typer.echo(f"available on cuda: {', '.join(available_backends('cuda'))}")

