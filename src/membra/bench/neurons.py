"""Forward and forward+backward of one LIF layer, x = [T, 64, 16384] fp32, for every membra
backend, torch.compile of the reference loop, the peers, and the memory-bandwidth limit.

The limit: a fused forward reads x and writes s (one tensor copy of traffic), a fused
forward+backward also reads gs and h (or x) and writes gx: three tensor copies
(docs/kernels.md). ``copy_x3`` times ``y.copy_(x)`` three times into preallocated ``y``;
``clone_x3`` times three fresh copies (``x.clone()``), which also pays the first touch of new
memory that every op returning a new tensor pays.
"""

from __future__ import annotations

import contextlib

import torch

from membra.kernels import available_backends, lif_sequence

from .peers import load_peers
from .timing import median_ms


@contextlib.contextmanager
def _no_pool():
    """Run the cpu backend with every output a fresh ``torch.empty`` (the allocation before
    the output pool: what the pool saves here)."""
    from membra.kernels import cpu as cpu_backend

    saved, cpu_backend._POOL_MIN_BYTES = cpu_backend._POOL_MIN_BYTES, -1
    try:
        yield
    finally:
        cpu_backend._POOL_MIN_BYTES = saved


def _custom_sigmoid(u: torch.Tensor) -> torch.Tensor:
    """A user's surrogate equal to the built-in ``sigmoid`` with alpha 4."""
    return torch.sigmoid(4.0 * u)


def custom_surrogate_ratios(res: dict) -> dict[str, dict[str, float]]:
    """fwd+bwd time of each fused backend with a custom surrogate over the same backend with
    the built-in one, per T (target: at most 1.3)."""
    out: dict[str, dict[str, float]] = {}
    for t, row in res["by_T"].items():
        for name, m in row["methods"].items():
            base = row["methods"].get(name.removesuffix("-custom-surrogate"), {})
            if name.endswith("-custom-surrogate") and "fwd_bwd" in m and "fwd_bwd" in base:
                out.setdefault(name, {})[t] = (m["fwd_bwd"]["median_ms"]
                                               / base["fwd_bwd"]["median_ms"])
    return out


def membra_methods(device: str, compile_reference: bool) -> dict:
    methods = {}
    for b in available_backends(device):
        methods[f"membra-{b}"] = (f"membra backend={b!r}",
                                  lambda x, b=b: lif_sequence(x, backend=b)[0])
    for b in [b for b in available_backends(device) if b != "reference"]:
        # the built-in sigmoid (alpha 4) as a user's callable: the precomputed-derivative path
        methods[f"membra-{b}-custom-surrogate"] = (
            f"membra backend={b!r}, custom surrogate f(u) = sigmoid(4u)",
            lambda x, b=b: lif_sequence(x, backend=b, surrogate=_custom_sigmoid)[0])
    if "membra-cpu" in methods:
        methods["membra-cpu-nopool"] = ("membra backend='cpu', fresh outputs (no pool)",
                                        methods["membra-cpu"][1])
        methods[INFER_BOOL] = ("membra backend='cpu', inference, spikes as torch.bool",
                               lambda x: lif_sequence(x, backend="cpu",
                                                      spike_dtype=torch.bool)[0])
    if compile_reference:
        compiled = torch.compile(lambda x: lif_sequence(x, backend="reference")[0],
                                 dynamic=False)
        methods["compile-reference"] = ("torch.compile of the reference loop", compiled)
    return methods


#: forward-only methods (their spikes carry no gradient)
INFER_BOOL = "membra-cpu-infer-bool"
FWD_ONLY = (INFER_BOOL,)


def time_method(run, x, gs, *, device, repeats, budget_s=None, fwd_only=False,
                prime=False) -> dict:
    """Medians of the forward and of forward + backward. ``prime``: one untimed forward and
    forward + backward first (a custom surrogate compiles its derivative at its first large
    layer, and on CUDA every fused method compiles its kernels at its first call, once per
    process: seconds that would otherwise count as the slow first call that caps the method's
    repeats, :func:`median_ms`)."""
    if prime:
        with torch.no_grad():
            run(x)
        if not fwd_only:
            xp = x.detach().clone().requires_grad_(True)
            run(xp).backward(gs)

    def fwd():
        with torch.no_grad():
            run(x)

    if fwd_only:
        return {"fwd": median_ms(fwd, device=device, repeats=repeats, budget_s=budget_s)}

    xg = x.detach().clone().requires_grad_(True)

    def fwd_bwd():
        s = run(xg)
        s.backward(gs)
        xg.grad = None

    return {"fwd": median_ms(fwd, device=device, repeats=repeats, budget_s=budget_s),
            "fwd_bwd": median_ms(fwd_bwd, device=device, repeats=repeats, budget_s=budget_s)}


def limits(x, *, device, repeats) -> dict:
    y = torch.empty_like(x)

    def copy1():
        y.copy_(x)

    def copy3():
        y.copy_(x)
        y.copy_(x)
        y.copy_(x)

    def clone1():
        x.clone()

    def clone3():
        a = x.clone()
        b = x.clone()
        c = x.clone()
        del a, b, c

    return {"copy_x1": median_ms(copy1, device=device, repeats=repeats),
            "copy_x3": median_ms(copy3, device=device, repeats=repeats),
            "clone_x1": median_ms(clone1, device=device, repeats=repeats),
            "clone_x3": median_ms(clone3, device=device, repeats=repeats)}


def run_neuron_bench(*, device="cpu", steps=(4, 16, 64), shape=(64, 16384), repeats=5,
                     compile_reference=True, compile_max_t=16, budget_s=30.0, only=None,
                     log=print) -> dict:
    """Every method (or those named in ``only``) at every T. Bounded: ``torch.compile`` of the
    reference loop only up to ``compile_max_t`` steps (its warm-up grows with T: over 12
    minutes at T=64 on the 2-core machine), and a method whose first call is slow is timed
    fewer times (``budget_s`` per method and phase, see :func:`median_ms`); both are written
    into the results."""
    methods = membra_methods(device, compile_reference and (not only
                                                            or "compile-reference" in only))
    peers, missing = load_peers(device) if not only or set(only) - set(methods) else ({}, [])
    methods.update(peers)
    if only:
        unknown = sorted(set(only) - set(methods))
        if unknown:
            raise ValueError(f"--only: no method {unknown} on {device}; choose from "
                             f"{sorted(methods)}")
        methods = {k: v for k, v in methods.items() if k in only}
    out = {"device": device, "shape": list(shape), "dtype": "float32", "by_T": {},
           "labels": {k: v[0] for k, v in methods.items()}, "peers_missing": missing,
           "bounds": {"compile_max_t": compile_max_t, "budget_s": budget_s}}
    for T in steps:
        g = torch.Generator().manual_seed(T)
        x = (torch.randn(T, *shape, generator=g) + 0.5).to(device)
        gs = torch.randn(T, *shape, generator=g).to(device)
        row = {"limits": limits(x, device=device, repeats=repeats), "methods": {}}
        log(f"T={T}: copy_x3 {row['limits']['copy_x3']['median_ms']:.1f} ms, "
            f"clone_x3 {row['limits']['clone_x3']['median_ms']:.1f} ms")
        for name, (_, run) in methods.items():
            if name == "compile-reference" and T > compile_max_t:
                row["methods"][name] = {"skipped": f"T > {compile_max_t}: torch.compile's "
                                        "warm-up of the T-step loop takes minutes"}
                log(f"  {name}: skipped ({row['methods'][name]['skipped']})")
                continue
            try:
                with _no_pool() if name.endswith("-nopool") else contextlib.nullcontext():
                    row["methods"][name] = time_method(
                        run, x, gs, device=device, repeats=repeats, budget_s=budget_s,
                        fwd_only=name in FWD_ONLY,
                        prime=name.endswith("-custom-surrogate") or device == "cuda")
            except Exception as e:  # a peer that fails at this size is reported, not fatal
                row["methods"][name] = {"error": f"{type(e).__name__}: {e}"}
                log(f"  {name}: failed ({e})")
                continue
            r = row["methods"][name]
            log(f"  {name}: " + ", ".join(f"{k} {r[k]['median_ms']:.1f} ms"
                                          + (" (capped)" if "capped" in r[k] else "")
                                          for k in ("fwd", "fwd_bwd") if k in r))
        out["by_T"][str(T)] = row
        del x, gs
    out["custom_surrogate_ratio"] = custom_surrogate_ratios(out)
    return out
