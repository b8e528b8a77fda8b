"""``membra export``: write a trained spiking model to an interchange format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import app

export_app = typer.Typer(help="""Export trained models (NIR, or a torch.export program).

    Examples:

    membra export nir runs/digits_imp_lts --out model.nir
    membra export torch runs/digits_imp_lts --out model.pt2
    """, no_args_is_help=True)
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


@export_app.command("torch")
def torch_(
    run: Annotated[Path, typer.Argument(help="Run folder (membra train or IMP-study run) or "
                                             "checkpoint file.")],
    out: Annotated[Path, typer.Option("--out", help="Output .pt2 file.")] = Path("model.pt2"),
    steps: Annotated[int | None, typer.Option(
        "--steps", min=1, help="Time steps T of the program (default: the run's data.T).")] = None,
    check: Annotated[bool, typer.Option(help="Load the file back and compare outputs on a "
                                             "random input.")] = True,
) -> None:
    """Export a trained network as a torch.export program (.pt2): plain ATen ops that
    `torch.export.load(path).module()` runs without membra, on [T, batch, *input shape] with
    T fixed and the batch free where the model allows it (docs/kernels.md, "torch.compile and
    torch.export").

    Example: membra export torch runs/digits_imp_lts --out model.pt2
    """
    import torch

    from ..export import export_program
    from ..train import load_run
    from ._runs import notes

    if not run.exists():
        raise typer.BadParameter(f"run folder or checkpoint not found: {run}")
    with notes():
        loaded = load_run(run)
    T = steps or loaded.config.data.T
    program, dynamic = export_program(loaded.model, loaded.in_shape, T)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, out)
    shape = f"[{T}, {'batch' if dynamic else 2}, {', '.join(map(str, loaded.in_shape))}]"
    typer.echo(f"wrote {out} ({loaded.model_name}, input {shape})")
    if check:
        batch = 3 if dynamic else 2
        x = torch.rand(T, batch, *loaded.in_shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            same = torch.allclose(torch.export.load(out).module()(x), loaded.model(x),
                                  atol=1e-5, rtol=1e-5)
        typer.echo("round trip: outputs match" if same else "round trip: outputs DIFFER")
        if not same:
            raise typer.Exit(1)
