"""``membra export``: write a trained spiking model to an interchange format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import app

export_app = typer.Typer(help="Export trained models (NIR).", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("nir")
def nir_(
    run: Annotated[Path, typer.Argument(help="Run folder (membra train or IMP-study run) or "
                                             "checkpoint file.")],
    out: Annotated[Path, typer.Option("--out", help="Output .nir file.")] = Path("model.nir"),
    dt: Annotated[float, typer.Option(help="Time step of the discretisation.")] = 1.0,
    check: Annotated[bool, typer.Option(help="Load the file back and compare spikes on a "
                                             "random input.")] = True,
) -> None:
    """Export a spiking network to NIR: chains and graphs (SEW-ResNet adds, concat, max-pool on
    spikes; docs/nir.md). The initial potentials (IMP), soft reset and '>=' firing travel as
    `membra.*` node metadata (NIR has no field for them).

    Example: membra export nir runs/digits_imp_lts --out model.nir
    """
    import torch

    from ..export import from_nir, read_nir, to_nir, write_nir
    from ._runs import load_run_model

    model, in_shape, name = load_run_model(run)  # errors: one line at the CLI's boundary
    try:
        graph = to_nir(model, in_shape, dt=dt)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err)) from err
    path = write_nir(graph, out)
    n = sum(1 for k in graph.nodes if k not in ("input", "output"))
    typer.echo(f"wrote {path} ({name}, {n} nodes, input shape {in_shape})")
    if check:
        back = from_nir(read_nir(path)).eval()
        x = torch.rand(4, 8, *in_shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            same = torch.allclose(model(x), back(x), atol=1e-4, rtol=1e-4)
        typer.echo("round trip: outputs match" if same else
                   "round trip: outputs DIFFER (see docs/nir.md)")
        if not same:
            raise typer.Exit(1)
