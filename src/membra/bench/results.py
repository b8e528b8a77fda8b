"""Markdown tables of benchmark results (ratios first) from :mod:`membra.bench.run`."""

from __future__ import annotations


def _ms(entry) -> float | None:
    return entry.get("median_ms") if isinstance(entry, dict) else None


def target_steps(steps) -> int:
    """The T the issue's targets are stated at: 16 when measured, else the middle one."""
    steps = [int(t) for t in steps]
    return 16 if 16 in steps else steps[len(steps) // 2]


def _ratio(num, den) -> float | None:
    return num / den if num is not None and den else None


def _phase(methods: dict, name: str, phase: str) -> float | None:
    m = methods.get(name, {})
    return _ms(m.get(phase)) if isinstance(m, dict) else None


def targets(results: dict) -> list[dict]:
    """The speed targets of the neuron-core issue, each with its same-run measured value:
    ``{"what", "target", "value", "met"}`` (``value`` ``None`` where not measured here)."""
    res = results.get("neuron", {}).get("cpu")
    if not res or not res.get("by_T"):
        return []
    t = str(target_steps(res["by_T"]))
    m = res["by_T"][t]["methods"]
    plain = results.get("plain") or {}
    shape = f"[{t}, {', '.join(map(str, res['shape']))}]"
    rows = [
        (f"LIF fwd+bwd {shape}: SpikingJelly time / membra time (freed memory reused)",
         ">= 5", 5.0, _ratio(_phase(m, "spikingjelly", "fwd_bwd"),
                              _phase(m, "membra-cpu", "fwd_bwd"))),
        (f"LIF fwd+bwd {shape}, plain script: SpikingJelly time / membra time", ">= 5", 5.0,
         _ratio(_phase(plain, "spikingjelly", "fwd_bwd"), _phase(plain, "membra-cpu",
                                                                 "fwd_bwd"))),
        (f"LIF fwd+bwd {shape}, plain script: three-copy limit / membra time", ">= 0.70",
         0.70, _ratio(_ms(plain.get("copy_x3")), _phase(plain, "membra-cpu", "fwd_bwd"))),
        (f"LIF inference {shape}, plain script: forward with float spikes and fresh outputs "
         "(the forward before the inference path) / inference with bool spikes", ">= 2", 2.0,
         _ratio(_phase(plain, "membra-cpu-nopool", "fwd"),
                _phase(plain, "membra-cpu-infer-bool", "fwd"))),
        (f"LIF fwd+bwd {shape}: custom surrogate time / built-in time", "<= 1.3", -1.3,
         res.get("custom_surrogate_ratio", {}).get("membra-cpu-custom-surrogate", {}).get(t)),
    ]
    conv = results.get("conv") or {}
    if "step" in conv.get("membra-cpu", {}) and "step" in conv.get("spikingjelly", {}):
        rows.append(("conv SNN training step [4, 32, 3, 32, 32]: SpikingJelly time / membra "
                     "time", ">= 1.5", 1.5, conv["spikingjelly"]["step"]["median_ms"]
                     / conv["membra-cpu"]["step"]["median_ms"]))
    else:
        rows.append(("conv SNN training step [4, 32, 3, 32, 32]: SpikingJelly time / membra "
                     "time", ">= 1.5", 1.5, None))
    out = []
    for what, target, bound, value in rows:
        met = None if value is None else (value >= bound if bound > 0 else value <= -bound)
        out.append({"what": what, "target": target, "value": value, "met": met})
    return out


def _targets_table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["### Targets (same-run ratios)", "", "| measured | target | value | met |",
             "|---|---|---|---|"]
    for r in rows:
        v = "not measured" if r["value"] is None else f"{r['value']:.3f}"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['what']} | {r['target']} | {v} | {met} |")
    return lines + [""]


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
                cells.append("failed" if "error" in m else "skipped" if "skipped" in m
                             else "-")
                continue
            parts = [f"{ms:.1f} ms" + (" (capped)" if "capped" in m[phase] else ""),
                     f"{lim[t] / ms:.0%}"]
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


def _plain_table(plain: dict | None) -> list[str]:
    """The plain-script run (:mod:`membra.bench.plain`)."""
    if not plain or "error" in plain:
        return ["Plain-script run: " + ("failed" if plain else "not run"), ""]
    lim = _ms(plain["copy_x3"])
    lines = [f"### Plain script (no reuse of freed memory), x = [{plain['T']}, "
             f"{', '.join(map(str, plain['shape']))}] float32, load average "
             f"{plain['load_avg'][0]:.1f}", "",
             "| method | phase | time | three-copy limit / time |", "|---|---|---|---|",
             f"| three copies of x, preallocated | | {lim:.1f} ms | 100% |"]
    for name in ("membra-cpu", "membra-cpu-nopool", "membra-cpu-infer-bool", "spikingjelly"):
        for phase in ("fwd_bwd", "fwd"):
            ms = _phase(plain, name, phase)
            if ms is not None:
                lines.append(f"| {name} | {phase.replace('_', '+')} | {ms:.1f} ms | "
                             f"{lim / ms:.0%} |")
    for phase in ("fwd", "bwd"):
        ms = _phase(plain, "kernel_only", phase)
        if ms is not None:
            lines.append(f"| cpu kernel alone, preallocated | {phase} | {ms:.1f} ms | "
                         f"{lim / ms:.0%} |")
    return lines + [""]


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
    out += _targets_table(results.get("targets") or targets(results))
    out += _plain_table(results.get("plain"))
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


def readme_table(results: dict) -> str:
    """The README's speed table: the targets table with the run's machine and load (written
    to ``speed_table.md`` next to ``kernels.md``)."""
    env = results["env"]
    head = (f"{env['threads']} threads on {env['cpus']} CPUs, load average "
            f"{env['load_avg_at_start'][0]:.1f} at start, "
            f"{env.get('load_avg_at_end', (float('nan'),))[0]:.1f} at end ({env['date']})")
    return "\n".join([head, ""] + _targets_table(results.get("targets") or targets(results))[2:])
