"""``membra construct``: compile spike-train rules into exact circuits, check, plot, classify."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from . import app

construct_app = typer.Typer(
    help="Compile finite-memory spike-train rules into exact spiking circuits.\n\n"
         "Examples:\n\n  membra construct compile --pattern 1,0,1,1 --out circuit.json\n\n"
         "  membra construct check circuit.json\n\n"
         "  membra construct plot circuit.json --out raster.png\n\n"
         "  membra construct classify",
    no_args_is_help=True)
app.add_typer(construct_app, name="construct")


def _parse_pattern(text: str) -> list[int]:
    try:
        bits = [int(b) for b in text.replace(" ", "").split(",") if b != ""]
    except ValueError:
        raise typer.BadParameter(f"--pattern must be 0/1 values separated by commas, got "
                                 f"{text!r}") from None
    if not bits or any(b not in (0, 1) for b in bits):
        raise typer.BadParameter(f"--pattern must be 0/1 values separated by commas, got "
                                 f"{text!r}")
    return bits


def _load_rule(path: Path):
    from ..construct import SpikeRule

    if not path.is_file():
        raise typer.BadParameter(f"rule file {str(path)!r} does not exist")
    try:
        return SpikeRule.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"{str(path)!r} is not valid JSON: {e}") from None
    except (ValueError, TypeError) as e:
        raise typer.BadParameter(f"rule file {str(path)!r}: {e}") from None


def _load_circuit(path: Path):
    from ..construct import SpikingCircuit

    try:
        return SpikingCircuit.load(path)
    except FileNotFoundError as e:
        raise typer.BadParameter(str(e)) from None
    except (ValueError, TypeError, KeyError) as e:
        raise typer.BadParameter(f"circuit file {str(path)!r}: {e}") from None


@construct_app.command("compile")
def compile_cmd(
    out: Annotated[Path, typer.Option("--out", help="Where to write the circuit JSON.")],
    rule: Annotated[Path | None, typer.Argument(
        help="RULE.json: {'pattern': [...]}, or {'m', 'n_inputs', 'table' | 'accept'}.")] = None,
    pattern: Annotated[str | None, typer.Option(
        "--pattern", help="Window pattern, oldest to newest, e.g. 1,0,1,1.")] = None,
    method: Annotated[str, typer.Option(help="baseline | compact")] = "baseline",
) -> None:
    """Compile a rule into a circuit JSON.

    Example: membra construct compile --pattern 1,0,1,1 --out circuit.json
    """
    from ..construct import SpikeRule, compile_rule

    if (rule is None) == (pattern is None):
        raise typer.BadParameter("give either RULE.json or --pattern (not both)")
    r = SpikeRule.from_pattern(_parse_pattern(pattern)) if pattern else _load_rule(rule)
    try:
        circ = compile_rule(r, method=method)
    except (ValueError, NotImplementedError) as e:
        raise typer.BadParameter(str(e)) from None
    circ.save(out)
    typer.echo(f"{r!r}\n-> {circ.n_neurons} neurons, {circ.n_weights} weights, depth "
               f"{circ.depth}, clock: {'yes' if circ.requires_clock else 'no'}; wrote {out}")


@construct_app.command("check")
def check_cmd(
    circuit: Annotated[Path, typer.Argument(help="Circuit JSON from `construct compile`.")],
    rule: Annotated[Path | None, typer.Option(
        help="RULE.json to check against (default: the rule stored in the circuit).")] = None,
    T: Annotated[int, typer.Option("--steps", help="Length of each random train.")] = 4000,
    seed: int = 0,
) -> None:
    """Check a circuit against its rule: every window and long random trains.

    Every window after random prefixes of length 0..2m, then 3 trains at each of the rates
    0.1/0.5/0.9, compared at every step; prints the counts and the margin min |V - 1| and
    exits with status 1 on any mismatch.

    Example: membra construct check circuit.json
    """
    from ..construct import SpikeRule
    from ..construct.verify import check_random, check_windows

    circ = _load_circuit(circuit)
    if rule is not None:
        r = _load_rule(rule)
    elif "rule" in circ.meta:
        r = SpikeRule.from_dict(circ.meta["rule"])
    else:
        raise typer.BadParameter("the circuit stores no rule; pass --rule RULE.json")
    try:
        win = check_windows(circ, r, seed=seed)
        rnd = check_random(circ, r, T=T, seed=seed)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(f"circuit: {circ.n_neurons} neurons, {circ.n_weights} weights, depth "
               f"{circ.depth}; {r!r}")
    typer.echo(f"windows: {win.runs} runs, {win.steps} steps, {win.mismatches} mismatches")
    typer.echo(f"random : {rnd.runs} trains x {T} steps, {rnd.steps} steps, "
               f"{rnd.mismatches} mismatches")
    typer.echo(f"margin : min |V - 1| = {min(win.margin, rnd.margin):.6g}")
    if win.mismatches or rnd.mismatches:
        raise typer.Exit(1)


@construct_app.command("plot")
def plot_cmd(
    circuit: Annotated[Path, typer.Argument(help="Circuit JSON.")],
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")] = Path("raster.png"),
    steps: Annotated[int, typer.Option(help="Length of the random input train.")] = 32,
    rate: Annotated[float, typer.Option(help="Input spike probability per step.")] = 0.5,
    seed: int = 0,
) -> None:
    """Raster of the input, the hidden neuron groups and the output on a short random train.

    Example: membra construct plot circuit.json --out raster.png
    """
    from ..construct.plot import plot_raster

    circ = _load_circuit(circuit)
    try:
        path = plot_raster(circ, out, steps=steps, rate=rate, seed=seed)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(f"wrote {path}")


@construct_app.command("classify")
def classify_cmd(
    epochs: Annotated[int, typer.Option(help="Training epochs of the LIF network.")] = 30,
    trials: Annotated[int, typer.Option(
        help="Random +-1% single-weight perturbations per model.")] = 50,
    n: Annotated[int, typer.Option(help="Number of trains (split 3/4 train, 1/4 test).")] = 4000,
    seed: int = 0,
) -> None:
    """Pattern 1,0,1,1 detection: the compiled exact circuit vs a trained LIF network.

    Example: membra construct classify --epochs 30
    """
    from rich.console import Console
    from rich.table import Table

    from ..construct.classify import run_demo

    console = Console(width=max(Console().width, 130))
    try:
        reports = run_demo(n=n, n_train=3 * n // 4, epochs=epochs, trials=trials, seed=seed,
                           log=lambda s: console.print(f"[dim]{s}[/]"))
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    table = Table(title=f"class 1 iff 1,0,1,1 occurs in a T=64 Bernoulli(0.3) train; "
                        f"{n - 3 * n // 4} test trains")
    for col in ("model", "test acc", "weights/params", "neurons", "spikes/train",
                "acc, 1 weight +-1% (mean)", "(min)"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in reports:
        table.add_row(r.name, f"{100 * r.accuracy:.2f}%", str(r.n_params), str(r.neurons),
                      f"{r.spikes_per_train:.1f}", f"{100 * r.perturbed_mean:.2f}%",
                      f"{100 * r.perturbed_min:.2f}%")
    console.print(table)


@construct_app.command("scaling")
def scaling_cmd(
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Folder for the report.")] = Path(
        "reports"),
    check: Annotated[bool, typer.Option(help="Check every built circuit exhaustively.")] = True,
) -> None:
    """Neurons and weights against m, baseline vs compact: writes construct_scaling.md/.png.

    Example: membra construct scaling --out-dir reports
    """
    from ..construct.scaling import write_report

    typer.echo(f"wrote {write_report(out_dir, check=check)}")
