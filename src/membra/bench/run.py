"""``membra bench`` / ``python -m membra.bench.run`` (``make bench``): neuron kernels and a
conv SNN training step.

Writes ``OUT/kernels.json`` (all medians and repeats) and ``OUT/kernels.md`` (the tables, as
ratios); ``make bench`` uses ``OUT = benchmarks/results``, ``membra bench`` ``runs/bench``.
Timings are never asserted anywhere; on a shared machine they are noisy, so compare ratios
from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from membra.kernels import available_backends

from .neurons import run_neuron_bench
from .results import markdown, readme_table, target_steps, targets

RESULTS = Path("runs/bench")


def conv_bench(impls, repeats, log=print) -> dict:
    out = {}
    for impl in impls:
        cmd = [sys.executable, "-m", "membra.bench.conv", impl, str(repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            out[impl] = {"error": proc.stderr.strip().splitlines()[-1:]}
            log(f"conv {impl}: failed: {out[impl]['error']}")
            continue
        out[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
        log(f"conv {impl}: {out[impl]['step']['median_ms']:.1f} ms/step, peak +"
            f"{out[impl]['peak_above_start_mb']:.0f} MB")
    return out


def plain_bench(T: int, neurons: int, repeats: int, log=print) -> dict:
    """:mod:`membra.bench.plain` in its own process (no reuse of freed memory)."""
    cmd = [sys.executable, "-m", "membra.bench.plain", str(T), str(neurons), str(repeats)]
    env = dict(os.environ, MEMBRA_MALLOC_CACHE="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        log(f"plain script: failed: {proc.stderr.strip().splitlines()[-1:]}")
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["load_avg"] = os.getloadavg()
    log(f"plain script T={T}: membra fwd+bwd {out['membra-cpu']['fwd_bwd']['median_ms']:.1f} "
        f"ms, three copies {out['copy_x3']['median_ms']:.1f} ms")
    return out


def device_problem(devices) -> str | None:
    """Why the bench cannot time ``devices`` here (an unknown name, CUDA without a GPU), or
    ``None``."""
    unknown = sorted(set(devices) - {"cpu", "cuda"})
    if unknown:
        return f"unknown {unknown}; choose from cpu, cuda"
    if "cuda" in devices and not torch.cuda.is_available():
        return f"torch sees no CUDA device here (torch {torch.__version__})"
    return None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[4, 16, 64], help="values of T")
    ap.add_argument("--neurons", type=int, default=16384, help="neurons per sample (x is "
                    "[T, 64, NEURONS])")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--compile-max-steps", type=int, default=16, help="time torch.compile of "
                    "the reference loop only up to this T (its warm-up takes minutes beyond)")
    ap.add_argument("--budget", type=float, default=30.0, help="seconds per method and phase: "
                    "a slower method is timed fewer times (marked capped)")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain-script run "
                    "(fresh memory, in its own process)")
    ap.add_argument("--no-conv", action="store_true", help="skip the conv SNN step")
    ap.add_argument("--conv-only", action="store_true", help="rerun only the conv SNN step, "
                    "updating the results already in --out")
    ap.add_argument("--rewrite", action="store_true", help="only rewrite the tables from the "
                    "kernels.json already in --out")
    ap.add_argument("--only", nargs="+", metavar="METHOD", help="time only these methods of "
                    "the neuron tables (e.g. membra-cpu membra-cpu-custom-surrogate); implies "
                    "--no-plain --no-conv unless --plain is given")
    ap.add_argument("--plain", action="store_true", help="with --only: also the plain script")
    ap.add_argument("--devices", nargs="+", help="cpu and/or cuda: time the neuron "
                    "tables on these devices only (default: cpu, and cuda when present)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.rewrite:
        if not (args.out / "kernels.json").is_file():
            ap.error(f"--rewrite needs {args.out / 'kernels.json'}, which does not exist")
        _write(json.loads((args.out / "kernels.json").read_text()), args.out)
        return
    if args.conv_only:
        if not (args.out / "kernels.json").is_file():
            ap.error(f"--conv-only updates {args.out / 'kernels.json'}, which does not exist; "
                     "run the full benchmark into --out first")
        results = json.loads((args.out / "kernels.json").read_text())
        _conv(results, args.repeats)
        _write(results, args.out)
        return

    import membra
    from membra.kernels.memory import reuse_applied, reuse_enabled_by_env, reuse_freed_memory

    # what a `membra train` process gets (MEMBRA_MALLOC_CACHE=0 measures fresh pages instead)
    if reuse_enabled_by_env():
        reuse_freed_memory()
    env = {"membra": membra.__version__, "torch": torch.__version__,
           "python": platform.python_version(), "machine": platform.machine(),
           "processor": platform.processor(), "threads": torch.get_num_threads(),
           "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
           "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "malloc_cache_bytes": reuse_applied()}
    print(f"membra bench: torch {env['torch']}, {env['threads']} threads, "
          f"load {env['load_avg_at_start'][0]:.1f}")
    results = {"env": env, "neuron": {}}
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if (why := device_problem(devices)) is not None:
        ap.error(f"--devices {' '.join(devices)}: {why}")
    for device in devices:
        if device == "cuda":
            env["gpu"] = torch.cuda.get_device_name()
        results["neuron"][device] = run_neuron_bench(
            device=device, steps=args.steps, shape=(64, args.neurons), repeats=args.repeats,
            compile_reference=not args.no_compile, compile_max_t=args.compile_max_steps,
            budget_s=args.budget, only=args.only)
    if args.only:
        args.no_plain, args.no_conv = not args.plain, True
    if not args.no_plain and "cpu" in devices and "cpu" in available_backends("cpu"):
        results["plain"] = plain_bench(target_steps(args.steps), args.neurons, args.repeats)
    if not args.no_conv:
        _conv(results, args.repeats)
    env["load_avg_at_end"] = os.getloadavg()
    _write(results, args.out)


def _conv(results: dict, repeats: int) -> None:
    from .peers import load_peers

    impls = ["membra-cpu", "membra-reference"]
    if "spikingjelly" in load_peers("cpu")[0]:
        impls.append("spikingjelly")
    results["conv"] = conv_bench(impls, repeats)
    results["env"]["conv_load_avg"] = os.getloadavg()


def _write(results: dict, out: Path) -> None:
    results["targets"] = targets(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernels.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "kernels.md").write_text(markdown(results))
    (out / "speed_table.md").write_text(readme_table(results))
    print(f"wrote {out / 'kernels.json'}, {out / 'kernels.md'} and {out / 'speed_table.md'}")


if __name__ == "__main__":
    main()
