"""Markdown tables of benchmark results (ratios first) from :mod:`membra.bench.run`."""

from __future__ import annotations


def _ms(entry) -> float | None:
    return entry.get("median_ms") if isinstance(entry, dict) else None


def _neuron_table(dev: str, res: dict, phase: str) -> list[str]:
    steps = list(res["by_T"])
    limit_key = "copy_x3" if phase == "fwd_bwd" else "copy_x1"
    fresh_key = "clone_x3" if phase == "fwd_bwd" else "clone_x1"
    title = "forward + backward" if phase == "fwd_bwd" else "forward (no grad)"
    copies = "three copies" if phase == "fwd_bwd" else "one copy"
    lines = [f"### LIF layer on {dev}, {title}, x = [T, {', '.join(map(str, res['shape']))}] "
             f"{res['dtype']}", "",
             "Each cell: median time; share of the memory-bandwidth limit (limit time / time); "
             "speed-up over SpikingJelly (SJ) and over torch.compile of the reference loop "
             "(compile).", "",
             "| method | " + " | ".join(f"T={t}" for t in steps) + " |",
             "|---|" + "---|" * len(steps)]
    lim = {t: _ms(res["by_T"][t]["limits"][limit_key]) for t in steps}
    fresh = {t: _ms(res["by_T"][t]["limits"][fresh_key]) for t in steps}
    lines.append(f"| limit: {copies} of x, preallocated | "
                 + " | ".join(f"{lim[t]:.1f} ms" for t in steps) + " |")
    lines.append(f"| {copies} of x into new tensors | "
                 + " | ".join(f"{fresh[t]:.1f} ms ({lim[t] / fresh[t]:.0%})" for t in steps)
                 + " |")
    names = list(res["labels"])
    for name in names:
        cells = []
        for t in steps:
            m = res["by_T"][t]["methods"].get(name, {})
            ms = _ms(m.get(phase)) if "error" not in m else None
            if ms is None:
                cells.append("failed" if "error" in m else "-")
                continue
            parts = [f"{ms:.1f} ms", f"{lim[t] / ms:.0%}"]
            for ref, short in (("spikingjelly", "SJ"), ("compile-reference", "compile")):
                r = res["by_T"][t]["methods"].get(ref, {})
                rms = _ms(r.get(phase)) if "error" not in r else None
                if rms is not None and ref != name:
                    parts.append(f"{rms / ms:.1f}x {short}")
            cells.append(" · ".join(parts))
        lines.append(f"| {res['labels'][name]} | " + " | ".join(cells) + " |")
    return lines + [""]


def _memory_note(env: dict) -> str:
    """How large tensors were allocated (:mod:`membra.kernels.memory`); older results lack it."""
    if "malloc_cache_bytes" not in env:
        return ""
    if env["malloc_cache_bytes"]:
        return "; freed memory reused (membra's malloc setting)"
    return "; fresh pages for every large tensor (MEMBRA_MALLOC_CACHE=0)"


def markdown(results: dict) -> str:
    env = results["env"]
    out = ["# membra kernel benchmarks", "",
           f"torch {env['torch']}, Python {env['python']}, {env['machine']}, "
           f"{env['threads']} threads on {env['cpus']} CPUs"
           + (f", GPU {env['gpu']}" if "gpu" in env else "")
           + _memory_note(env)
           + f"; load average {env['load_avg_at_start'][0]:.1f} at start, "
           f"{env.get('load_avg_at_end', (float('nan'),))[0]:.1f} at end ({env['date']}). "
           "The machine is shared: absolute times are noisy, ratios from the same run "
           "are what to compare.", ""]
    for dev, res in results["neuron"].items():
        out += _neuron_table(dev, res, "fwd_bwd")
        out += _neuron_table(dev, res, "fwd")
        for name, by_t in res.get("custom_surrogate_ratio", {}).items():
            out += [f"Custom surrogate over built-in, fwd+bwd ({name}; target <= 1.3x): "
                    + ", ".join(f"T={t}: {r:.2f}x" for t, r in by_t.items()), ""]
        if res.get("peers_missing"):
            out += ["Peers not measured: " + "; ".join(
                f"{k} ({v.splitlines()[0][:80]})" for k, v in res["peers_missing"].items()), ""]
    conv = results.get("conv")
    if conv:
        out += ["### Conv SNN training step, x = [T=4, B=32, 3, 32, 32] (CPU)", "",
                "Two conv blocks (conv, BN, LIF, max-pool) and a linear readout; SGD step. "
                "Peak memory: peak resident memory (VmHWM) above the resident size before the "
                "first step, each implementation in its own process.", "",
                "| implementation | time / step | speed-up over SJ | peak memory | vs SJ |",
                "|---|---|---|---|---|"]
        sj = conv.get("spikingjelly", {})
        for impl, r in conv.items():
            if "error" in r:
                out.append(f"| {impl} | failed | | | |")
                continue
            ms = r["step"]["median_ms"]
            mb = r["peak_above_start_mb"]
            speed = f"{sj['step']['median_ms'] / ms:.2f}x" if "step" in sj else "-"
            mem = f"{mb / sj['peak_above_start_mb']:.2f}x" if "step" in sj else "-"
            out.append(f"| {impl} | {ms:.1f} ms | {speed} | {mb:.0f} MB | {mem} |")
        out.append("")
    return "\n".join(out)
