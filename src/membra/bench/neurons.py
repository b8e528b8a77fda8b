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
def _no_hugepages():
    """Run the cpu backend without its huge-page advice on outputs (what it costs here)."""
    from membra.kernels import cpu as cpu_backend

    saved, cpu_backend._HUGE_MIN_BYTES = cpu_backend._HUGE_MIN_BYTES, -1
    try:
        yield
    finally:
        cpu_backend._HUGE_MIN_BYTES = saved


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
        methods["membra-cpu-4k"] = ("membra backend='cpu', outputs on 4 KiB pages",
                                    methods["membra-cpu"][1])
    if compile_reference:
        compiled = torch.compile(lambda x: lif_sequence(x, backend="reference")[0],
                                 dynamic=False)
        methods["compile-reference"] = ("torch.compile of the reference loop", compiled)
    return methods


def time_method(run, x, gs, *, device, repeats) -> dict:
    def fwd():
        with torch.no_grad():
            run(x)

    xg = x.detach().clone().requires_grad_(True)

    def fwd_bwd():
        s = run(xg)
        s.backward(gs)
        xg.grad = None

    return {"fwd": median_ms(fwd, device=device, repeats=repeats),
            "fwd_bwd": median_ms(fwd_bwd, device=device, repeats=repeats)}


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
                     compile_reference=True, log=print) -> dict:
    methods = membra_methods(device, compile_reference)
    peers, missing = load_peers(device)
    methods.update(peers)
    out = {"device": device, "shape": list(shape), "dtype": "float32", "by_T": {},
           "labels": {k: v[0] for k, v in methods.items()}, "peers_missing": missing}
    for T in steps:
        g = torch.Generator().manual_seed(T)
        x = (torch.randn(T, *shape, generator=g) + 0.5).to(device)
        gs = torch.randn(T, *shape, generator=g).to(device)
        row = {"limits": limits(x, device=device, repeats=repeats), "methods": {}}
        log(f"T={T}: copy_x3 {row['limits']['copy_x3']['median_ms']:.1f} ms, "
            f"clone_x3 {row['limits']['clone_x3']['median_ms']:.1f} ms")
        for name, (_, run) in methods.items():
            try:
                with _no_hugepages() if name.endswith("-4k") else contextlib.nullcontext():
                    row["methods"][name] = time_method(run, x, gs, device=device,
                                                       repeats=repeats)
            except Exception as e:  # a peer that fails at this size is reported, not fatal
                row["methods"][name] = {"error": f"{type(e).__name__}: {e}"}
                log(f"  {name}: failed ({e})")
                continue
            r = row["methods"][name]
            log(f"  {name}: fwd {r['fwd']['median_ms']:.1f} ms, "
                f"fwd+bwd {r['fwd_bwd']['median_ms']:.1f} ms")
        out["by_T"][str(T)] = row
        del x, gs
    out["custom_surrogate_ratio"] = custom_surrogate_ratios(out)
    return out
