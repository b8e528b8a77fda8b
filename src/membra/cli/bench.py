"""``membra bench``."""

from __future__ import annotations

import typer

from . import app


@app.command()
def bench(
    steps: str = typer.Option("4,16,64", help="values of T, comma-separated"),
    neurons: int = typer.Option(16384, min=1, help="neurons per sample (x is [T, 64, N])"),
    repeats: int = typer.Option(5, min=1, help="timed repeats after warm-up (median)"),
    compile_reference: bool = typer.Option(True, "--compile/--no-compile",
                                           help="also time torch.compile of the reference loop"),
    conv: bool = typer.Option(True, "--conv/--no-conv",
                              help="also time a conv SNN training step (peak memory)"),
    plain: bool | None = typer.Option(None, "--plain/--no-plain",
                                      help="also the plain-script run (fresh memory, own "
                                      "process; default: yes, except with --only)"),
    only: str = typer.Option("", help="time only these methods of the neuron tables, "
                             "comma-separated (e.g. membra-cpu,spikingjelly); skips the "
                             "conv step, and the plain script unless --plain is given"),
    devices: str = typer.Option("", help="cpu, cuda or cpu,cuda (default: cpu, and cuda when "
                                "torch sees a GPU)"),
    out: str = typer.Option("runs/bench", help="folder for kernels.json and kernels.md"),
) -> None:
    """Time membra's neuron kernels on this machine: a LIF layer forward and forward+backward
    for each backend, against the memory-bandwidth limit (three copies of x), torch.compile of
    the reference loop and SpikingJelly / snnTorch / Norse when they are installed; then a
    conv SNN training step. Results (ratios first) go to OUT/kernels.md and OUT/kernels.json;
    timings are medians and are noisy on a shared machine.

    Examples:

    membra bench --steps 16 --no-conv
    membra bench --devices cuda
    membra bench --only membra-cpu,membra-cpu-custom-surrogate
    """
    from ..bench.run import device_problem, main

    try:
        ts = [int(s) for s in steps.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"--steps {steps!r}: expected integers like 4,16,64") from None
    if not ts or min(ts) < 1:
        raise typer.BadParameter(f"--steps {steps!r}: expected positive integers like 4,16,64")
    argv = ["--steps", *map(str, ts), "--neurons", str(neurons), "--repeats", str(repeats),
            "--out", out]
    argv += [] if compile_reference else ["--no-compile"]
    argv += [] if conv else ["--no-conv"]
    methods = list(dict.fromkeys(m.strip() for m in only.split(",") if m.strip()))
    if methods:  # (with --only the plain script runs only when asked for)
        argv += ["--only", *methods] + (["--plain"] if plain else [])
    elif plain is False:
        argv += ["--no-plain"]
    devs = list(dict.fromkeys(d.strip() for d in devices.split(",") if d.strip()))
    if devs and (why := device_problem(devs)) is not None:
        raise typer.BadParameter(f"--devices {devices!r}: {why}")
    argv += ["--devices", *devs] if devs else []
    try:
        main(argv)
    except ValueError as e:  # an unknown --only method, named with the choices
        if str(e).startswith("--only"):
            raise typer.BadParameter(str(e).removeprefix("--only: ")) from None
        raise
