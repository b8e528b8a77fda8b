"""``membra convert train|run|report``: QCFS training and ANN-to-SNN conversion."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import app

convert_app = typer.Typer(help="ANN-to-SNN conversion: QCFS training, naive IF conversion, "
                               "PASCAL (exactly equal to the QCFS ANN), AL levels.\n\n"
                               "Examples:\n\n  membra convert train configs/convert_digits.toml"
                               "\n\n  membra convert run runs/convert_digits --mode pascal\n\n"
                               "  membra convert run runs/convert_digits --mode naive --T 16\n\n"
                               "  membra convert report runs/convert_digits",
                          no_args_is_help=True)
app.add_typer(convert_app, name="convert")


@convert_app.command("train")
def train(
    config: Annotated[Path, typer.Argument(help="TOML run file with a \\[convert] table.")],
    set_: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045 (typer needs Optional)
        "--set", help="Override: section.key=value, incl. convert.L=4 (repeat).")] = None,
    device: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--device", help="cpu | cuda (default: cuda if present).")] = None,
) -> None:
    """Train the QCFS ANN with membra's engine (stage 1, uniform L), then, with
    convert.al = true, choose per-layer levels and fine-tune (stage 2, RUN/al).

    Example: membra convert train configs/convert_digits.toml --set convert.L=4
    """
    from ..experiments.qcfs_pascal import load_convert_config, train_convert

    cfg, sec = load_convert_config(config, list(set_ or []))
    record = train_convert(cfg, sec, device=device, log=typer.echo)
    for st in record["stages"]:
        typer.echo(f"stage {st['name']}: L = {list(st['L'].values())} (sum "
                   f"{sum(st['L'].values())}), ANN test accuracy {100 * st['test_acc']:.2f}%")


@convert_app.command("run")
def run(
    run_dir: Annotated[Path, typer.Argument(help="Conversion run folder (or a path in it).")],
    mode: Annotated[str, typer.Option(help="pascal | naive")] = "pascal",
    T: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--T", min=1, help="Time steps of naive mode (default 32).")] = None,
    stage: Annotated[Optional[str], typer.Option(  # noqa: UP045
        help="uniform | al (default: the last trained).")] = None,
    neuron: Annotated[str, typer.Option(help="PASCAL neuron: two_phase | signed")] = "two_phase",
    bias: Annotated[str, typer.Option(help="PASCAL bias: split | first")] = "split",
    simulate: Annotated[str, typer.Option(help="temporal | counts")] = "temporal",
    float64: Annotated[bool, typer.Option("--float64", help="Simulate in float64.")] = False,
) -> None:
    """Convert a trained run and evaluate the SNN on the test split next to the ANN: accuracy,
    prediction agreement, logit difference, time steps, spikes, SOPs and energy per layer.

    Example: membra convert run runs/convert_digits --mode naive --T 16
    """
    import torch

    from ..convert.report import evaluate_snn
    from ..experiments.qcfs_pascal import eval_batches, load_stage
    from ._runs import notes

    if mode not in ("pascal", "naive"):
        raise ValueError(f"--mode must be pascal or naive, got {mode!r}")
    if mode == "pascal" and T is not None:
        raise ValueError("--T is for --mode naive; PASCAL's time steps follow from L")
    with notes():
        net, cfg, st = load_stage(run_dir, stage)
    kw = {} if mode == "naive" else {"neuron": neuron, "bias": bias, "simulate": simulate}
    res = evaluate_snn(net, eval_batches(cfg), mode, T=(T or 32) if mode == "naive" else None,
                       dtype=torch.float64 if float64 else None, **kw)
    snn_dtype = "float64" if float64 else "float32"
    typer.echo(f"stage {st['name']}, L = {list(st['L'].values())}; {mode} SNN ({snn_dtype}), "
               f"{res['time_steps']} time steps: accuracy {100 * res['snn_acc']:.2f}%")
    if mode == "pascal":
        typer.echo(f"vs the BN-folded ANN (what the SNN is built from, {snn_dtype}): "
                   f"{res['count_mismatches']} count mismatches of {res['neurons']:,} neuron "
                   f"outputs, same prediction {100 * res['folded_agreement']:.1f}%, "
                   f"max |logit diff| {res['folded_logit_diff']:.2e}")
    counts = (f"{res['unfolded_count_mismatches']} count mismatches of {res['neurons']:,}, "
              if mode == "pascal" else "")
    typer.echo(f"vs the trained ANN (BN unfolded, float32): accuracy "
               f"{100 * res['ann_acc']:.2f}%, {counts}same prediction "
               f"{100 * res['agreement']:.1f}%, max |logit diff| {res['max_logit_diff']:.2e}")
    typer.echo(res["markdown"])


@convert_app.command("report")
def report(
    run_dir: Annotated[Path, typer.Argument(help="Conversion run folder.")],
    out: Annotated[Optional[Path], typer.Option(  # noqa: UP045
        help="Report folder (default RUN/report).")] = None,
    naive_T: Annotated[int, typer.Option("--naive-T", min=1,
                                         help="Longest naive T of the curve.")] = 64,
) -> None:
    """Write report.md, report.json and plots: naive accuracy vs T against the ANN line and the
    PASCAL point, spikes and SOPs per layer, uniform L vs AL.

    Example: membra convert report runs/convert_digits --out reports/convert
    """
    from ..experiments.qcfs_pascal import write_report
    from ._runs import notes

    with notes():
        path = write_report(run_dir, out, naive_T)
    typer.echo((path / "report.md").read_text().split("\n## ")[0])
    typer.echo(f"report -> {path}")


@convert_app.command("calibrate")
def calibrate(
    out: Annotated[Path, typer.Option(help="Markdown report to write.")] = Path(
        "reports/convert/calibrate.md"),
    epochs: Annotated[int, typer.Option(min=1, help="Epochs of the ReLU net.")] = 30,
    seed: Annotated[int, typer.Option(help="Seed of training and data order.")] = 0,
    percentile: Annotated[float, typer.Option(help="Percentile of scale=percentile.")] = 99.9,
    dataset: Annotated[str, typer.Option(help="digits | mnist-5k (real MNIST, 28x28).")] =
    "digits",
) -> None:
    """Post-training conversion study on the digits or real MNIST: train a plain ReLU CNN,
    calibrate QCFS clip values with quantize_relu (max and percentile, L = 2..16), convert
    (PASCAL, naive at T = 1..64) and write the accuracy table.

    Examples:

    membra convert calibrate --epochs 5 --out calibrate.md
    membra convert calibrate --dataset mnist-5k --epochs 5 --out mnist5k.md
    """
    from ..experiments.calibrate_study import calibration_study, study_markdown

    res = calibration_study(epochs=epochs, seed=seed, percentile=percentile, dataset=dataset)
    command = f"membra convert calibrate --epochs {epochs} --seed {seed} " \
              f"--percentile {percentile:g}" + \
              (f" --dataset {dataset} --out {out}" if dataset != "digits" else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(study_markdown(res, command))
    typer.echo(study_markdown(res, command))
    typer.echo(f"wrote {out}")


@convert_app.command("latency")
def latency(
    configs: Annotated[list[Path], typer.Argument(help="Conversion run files (TOML with a "
                                                       "\\[convert] table).")],
    depths: Annotated[str, typer.Option(help="QCFS layers of the nets, comma-separated.")] =
    "7,13",
    T_max: Annotated[int, typer.Option("--T-max", min=1, help="Longest naive T.")] = 256,
    runs: Annotated[Path, typer.Option(help="Folder of the training runs.")] = Path(
        "runs/latency"),
    out: Annotated[Path, typer.Option(help="Report folder (cases cached in OUT/latency).")] =
    Path("reports/convert"),
    set_: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045 (typer needs Optional)
        "--set", help="Override for every config: section.key=value (repeat).")] = None,
    cached_only: Annotated[bool, typer.Option(
        "--cached-only", help="Report the cases evaluated so far; train and simulate nothing.")]
    = False,
) -> None:
    """PASCAL's step counts (1 + sum L, max L, the per-layer T_eff of PASCAL's code) against
    the T naive conversion needs for ANN - 0.5 pt, ANN - 0.1 pt and 100 % agreement, with
    spikes and SOPs at equal accuracy; depth x (L = 2, L = 4, AL) per config. Trained runs and
    evaluated cases are reused, so an interrupted benchmark resumes.

    Examples:

    membra convert latency configs/convert_latency_mnist5k.toml
    membra convert latency configs/convert_latency_mnist1d.toml --depths 7
    """
    from ..experiments.latency import latency_benchmark, resnet34_claim, write_latency_report

    try:
        ds = tuple(int(d) for d in depths.split(","))
    except ValueError:
        raise ValueError(f"--depths must be comma-separated ints, got {depths!r}") from None
    results = latency_benchmark(configs, ds, runs_root=runs, cache=out / "latency",
                                T_max=T_max, overrides=list(set_ or []), log=typer.echo,
                                train=not cached_only)
    command = ("membra convert latency " + " ".join(str(c) for c in configs)
               + (f" --depths {depths}" if ds != (7, 13) else "")
               + (f" --T-max {T_max}" if T_max != 256 else "")
               + "".join(f" --set {s}" for s in set_ or [])
               + (" --cached-only" if cached_only else ""))
    md = write_latency_report(results, out, command, resnet34_claim())
    typer.echo(md.read_text().split("\n## Spikes")[0])
    typer.echo(f"report -> {md}")
