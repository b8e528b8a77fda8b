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
        _round_trip(model, from_nir(read_nir(path)).eval(),
                    torch.rand(4, 8, *in_shape, generator=torch.Generator().manual_seed(0)),
                    tol=1e-4, see=" (see docs/nir.md)")


def _round_trip(model, back, x, *, tol: float, see: str = "") -> None:
    """Say whether the file read ``back`` gives ``model``'s outputs on ``x``; exit 1 if not."""
    import torch

    with torch.no_grad():
        same = torch.allclose(model(x), back(x), atol=tol, rtol=tol)
    typer.echo("round trip: outputs match" if same else f"round trip: outputs DIFFER{see}")
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
    from ._runs import load_cli_run

    loaded = load_cli_run(run)  # errors: one line at the CLI's boundary
    T = steps or loaded.config.data.T
    program, dynamic = export_program(loaded.model, loaded.in_shape, T)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, out)
    shape = f"[{T}, {'batch' if dynamic else 2}, {', '.join(map(str, loaded.in_shape))}]"
    typer.echo(f"wrote {out} ({loaded.model_name}, input {shape})")
    if check:  # (a batch other than the traced one where it is free)
        x = torch.rand(T, 3 if dynamic else 2, *loaded.in_shape,
                       generator=torch.Generator().manual_seed(1))
        _round_trip(loaded.model, torch.export.load(out).module(), x, tol=1e-5)
