"""``membra report``: turn analyses and runs into tables, markdown and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import app

report_app = typer.Typer(help="Reports: spike-pattern counts, the IMP study.",
                         no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("patterns")
def patterns(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for patterns.md and the heatmap PNG.")] = None,
    T: Annotated[int, typer.Option("--T", help="Time steps (2^T input trains).")] = 4,
    reset: Annotated[str, typer.Option(help="Reset: soft | hard.")] = "soft",
    fire: Annotated[str, typer.Option(help="Firing rule: '>=' (membra) or '>' (strict).")] = ">=",
) -> None:
    """Count the input->output spike patterns of one IF neuron with V_0 = 0 and with V_0
    swept over [-1, 1] (membrane-dynamics spec §8); print the table, save the heatmaps.

    Example: membra report patterns --out reports/patterns
    """
    from rich.console import Console
    from rich.table import Table

    from ..analysis.patterns import pattern_table, spec_grids

    try:
        results = spec_grids(T, reset=reset, fire=fire)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    rows = pattern_table(results)
    table = Table(title=f"IF neuron, v_th=1, {reset} reset, fire on H {fire} v_th, T={T}")
    for h in rows[0]:
        table.add_column(h)
    for r in rows[1:]:
        table.add_row(*r)
    Console().print(table)
    if out is not None:
        from ..analysis.plots import pattern_heatmaps

        out.mkdir(parents=True, exist_ok=True)
        md = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        md += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        (out / "patterns.md").write_text(
            f"# Spike-pattern counts (IF, v_th = 1, {reset} reset, fire on H {fire} v_th, "
            f"T = {T})\n\nGrid A: V_0 = 0, w in linspace(0, 1, 17). Grid B: V_0 in "
            "linspace(-1, 1, 9) x w in linspace(0, 1, 9).\n\n" + "\n".join(md) +
            "\n\n![heatmaps](patterns.png)\n")
        png = pattern_heatmaps(results, out / "patterns.png", T=T)
        typer.echo(f"wrote {out / 'patterns.md'} and {png}")
