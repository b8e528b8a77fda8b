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
        from ..analysis.patterns import format_train
        from ..plotting import pattern_heatmaps_figure, save

        out.mkdir(parents=True, exist_ok=True)
        md = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        md += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        (out / "patterns.md").write_text(
            f"# Spike-pattern counts (IF, v_th = 1, {reset} reset, fire on H {fire} v_th, "
            f"T = {T})\n\nGrid A: V_0 = 0, w in linspace(0, 1, 17). Grid B: V_0 in "
            "linspace(-1, 1, 9) x w in linspace(0, 1, 9).\n\n" + "\n".join(md) +
            "\n\n![heatmaps](patterns.png)\n")
        labels = [format_train(c, T) for c in range(2 ** T)]
        png = save(pattern_heatmaps_figure(results, labels), out / "patterns.png")
        typer.echo(f"wrote {out / 'patterns.md'} and {png}")


@report_app.command("run-study")
def run_study(
    configs: Annotated[list[Path], typer.Argument(help="Study run configs (one TOML per arm).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the run folders.")] = Path(
        "runs/study"),
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    epochs: Annotated[int, typer.Option(help="Override train.epochs (0: keep).")] = 0,
    threads: Annotated[int, typer.Option(help="torch CPU threads (run.threads).")] = 1,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config key of every run, e.g. --set train.lr=1e-3.")] = None,
) -> None:
    """Train every config with every seed through `membra train`'s engine; each run is an
    ordinary run folder <out>/<run.name>_s<seed> (tagged with its arm and seed) that `membra
    eval`, TensorBoard and `membra report imp` read. Finished runs are skipped, interrupted
    ones resumed.

    Example: membra report run-study configs/study/digits/*.toml --out runs/study
    """
    from ..experiments.study import run_arm

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as err:
        raise typer.BadParameter(f"--seeds must be integers like 0,1,2, got {seeds!r}") \
            from err
    over = [f"run.threads={threads}", *(overrides or [])]
    if epochs:
        over.append(f"train.epochs={epochs}")
    for cfg in configs:
        for seed in seed_list:
            run_arm(cfg, seed=seed, out_dir=out, overrides=over, log=typer.echo)


@report_app.command("imp")
def imp(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (or folders holding them).")],
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("reports/imp"),
    title: Annotated[str, typer.Option(help="Report title.")] = "IMP study",
) -> None:
    """Aggregate IMP-study runs: per-step accuracy table (mean ± std over seeds), readouts,
    SOPs/energy next to the equal-size ANN, per-step curves with bands, and histograms of the
    learned initial potentials per layer.

    Example: membra report imp runs/study --out reports/imp
    """
    from ..experiments.imp_tables import imp_report

    try:
        path = imp_report(runs, out, title=title)
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(path.read_text())
    typer.echo(f"wrote {path}")


@report_app.command("sops")
def sops_(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint file.")],
    batch: Annotated[int, typer.Option(help="Test samples to average over.")] = 256,
) -> None:
    """Synaptic operations per layer and the 45 nm energy estimate of a trained run, next to
    the equally-sized ANN (first-layer analog input counted as MACs).

    Example: membra report sops runs/study/digits_imp_s0
    """
    from ..energy import sops as count
    from ._runs import load_run_model

    try:
        model, in_shape, _ = load_run_model(run)
        x = _test_batch(run, batch)
    except (ValueError, FileNotFoundError) as err:
        raise typer.BadParameter(str(err)) from err
    typer.echo(count(model, x).to_markdown())


def _test_batch(run: Path, batch: int):
    """``[T, B, *S]`` test inputs of a run folder."""
    import torch

    from ..train.checkpoint import read_meta, resolve_checkpoint
    from ..train.config import config_from_dict
    from ..train.engine import build_datasets

    cfg = config_from_dict(read_meta(resolve_checkpoint(run))["config"])
    _, test_ds = build_datasets(cfg)
    xs = [test_ds[i][0] for i in range(min(batch, len(test_ds)))]
    return torch.stack(xs).transpose(0, 1)
