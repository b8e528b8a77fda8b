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
         "  membra construct classify\n\n"
         "  membra construct scaling --out-dir reports",
    no_args_is_help=True)
app.add_typer(construct_app, name="construct")


def _at_least(option: str, value: int, lo: int) -> int:
    """Refuse an integer option below ``lo``, naming it (one ``error:`` line at the CLI)."""
    if value < lo:
        raise ValueError(f"{option} must be an int >= {lo}, got {value}")
    return value


def _parse_pattern(text: str) -> list[int]:
    """``"1,0,1,1"`` -> ``[1, 0, 1, 1]``; anything but 0/1 values separated by commas is
    refused."""
    parts = text.replace(" ", "").split(",")
    if not text.strip() or any(b not in ("0", "1") for b in parts):
        raise ValueError(f"--pattern must be 0/1 values separated by commas, got {text!r}")
    return [int(b) for b in parts]


def _load_rule(path: Path):
    from ..construct import SpikeRule

    if not path.is_file():
        raise FileNotFoundError(f"rule file {str(path)!r} does not exist")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON: {e}") from None
    try:
        return SpikeRule.from_dict(d)
    except (ValueError, TypeError) as e:
        raise ValueError(f"rule file {str(path)!r}: {e}") from None


def _load_circuit(path: Path):
    from ..construct import SpikingCircuit

    try:
        return SpikingCircuit.load(path)
    except FileNotFoundError:
        raise
    except (ValueError, TypeError) as e:
        raise ValueError(f"circuit file {str(path)!r}: {e}") from None


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
        raise ValueError("give either RULE.json or --pattern (not both)")
    r = SpikeRule.from_pattern(_parse_pattern(pattern)) if pattern is not None else \
        _load_rule(rule)
    circ = compile_rule(r, method=method)
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

    _at_least("--steps", T, 1)
    _at_least("--seed", seed, 0)
    circ = _load_circuit(circuit)
    if rule is not None:
        r = _load_rule(rule)
    elif "rule" in circ.meta:
        try:
            r = SpikeRule.from_dict(circ.meta["rule"])
        except (ValueError, TypeError) as e:
            raise ValueError(f"circuit file {str(circuit)!r}: meta.rule: {e}") from None
    else:
        raise ValueError("the circuit stores no rule; pass --rule RULE.json")
    win = check_windows(circ, r, seed=seed)
    rnd = check_random(circ, r, T=T, seed=seed)
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

    _at_least("--seed", seed, 0)
    circ = _load_circuit(circuit)
    typer.echo(f"wrote {plot_raster(circ, out, steps=steps, rate=rate, seed=seed)}")


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

    _at_least("--seed", seed, 0)
    console = Console(width=max(Console().width, 130))
    reports = run_demo(n=n, n_train=3 * n // 4, epochs=epochs, trials=trials, seed=seed,
                       log=lambda s: console.print(f"[dim]{s}[/]"))
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
    max_m: Annotated[int | None, typer.Option(
        "--max-m", help="Build and check the circuits of m = 2..MAX_M (default 12, under a "
                        "minute; at most 16).")] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="The full check, m = 2..16 (about 5 minutes of CPU).")] = False,
    check: Annotated[bool, typer.Option(help="Check every built circuit exhaustively.")] = True,
) -> None:
    """Neurons and weights against m, baseline vs compact: writes construct_scaling.md/.png.

    Prints the number of circuits and the estimated time, then a progress bar.

    Example: membra construct scaling --out-dir reports
    """
    from ..construct.scaling import DEFAULT_MAX_M, FULL_MAX_M, write_report

    if full and max_m is not None:
        raise ValueError("give --full (m up to 16) or --max-m, not both")
    m = FULL_MAX_M if full else DEFAULT_MAX_M if max_m is None else max_m
    typer.echo(f"wrote {write_report(out_dir, max_m=m, check=check)}")
