"""Fwd+bwd time of each neuron model relative to LIF at the same shape (fused ``cpu``
backend, same process, the two timed alternately, median of repeats).

    python -m membra.bench.models [T B N] [--rlif-n N]

RLIF's recurrent weight is ``[N, N]``, so it is timed at its own (smaller) ``N`` against LIF
at that ``N``; the line after the table gives the share of RLIF's time that its GEMMs alone
take (the same GEMMs timed on their own: ``T`` ``[B, N] x [N, N]`` products forward, ``T - 1``
backward into the previous spikes, one ``[N, T B] x [T B, N]`` for the weight's gradient),
and the last line RLIF's time as one autograd node against the per-step ops it replaced (the
same layer under :func:`membra.kernels.direct.through_the_ops`, timed alternately).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from ..nn import ALIF, LIF, RLIF, CubaLIF, Delay
from .timing import median_ms


def fwd_bwd(layer, x) -> None:
    """``layer(x).sum().backward()`` (x requires grad)."""
    x.grad = None
    layer(x).sum().backward()


def paired_ms(layer, lif, x, repeats: int = 7) -> tuple[float, float]:
    """Median ms of ``layer``'s and ``lif``'s fwd+bwd timed alternately (after one warm-up
    round each), so that a change of the machine's load hits both alike."""
    times: tuple[list, list] = ([], [])
    for i in range(repeats + 1):
        for m, acc in ((layer, times[0]), (lif, times[1])):
            t0 = time.perf_counter()
            fwd_bwd(m, x)
            if i:
                acc.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times[0]), statistics.median(times[1])


def rlif_gemm_ms(T: int, B: int, N: int, repeats: int = 7) -> float:
    """Median ms of the GEMMs of one RLIF fwd+bwd at ``[T, B, N]`` timed on their own."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(N, N, generator=g)
    s = (torch.rand(T, B, N, generator=g) < 0.2).float()
    x = torch.randn(T, B, N, generator=g)
    out = torch.empty(B, N)

    def run():
        for t in range(T):
            torch.addmm(x[t], s[t], w.t(), out=out)
        for t in range(T - 1):
            torch.mm(x[t], w, out=out)
        x.reshape(T * B, N).t().mm(s.reshape(T * B, N))
    return median_ms(run, repeats=repeats)["median_ms"]


class _ThroughTheOps(torch.nn.Module):
    """``layer`` run with every op dispatched (RLIF: per-step ops chained by autograd)."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        from ..kernels.direct import through_the_ops

        with through_the_ops():
            return self.layer(x)


def ratios(T: int, B: int, N: int, rlif_n: int, backend: str = "cpu") -> list[tuple]:
    """Rows ``(model, shape, ms, LIF ms, ratio)``."""
    rows = []
    cases = ((N, {"CubaLIF": lambda: CubaLIF(backend=backend),
                  "ALIF": lambda: ALIF(backend=backend),
                  "Delay(max 4)": lambda: Delay((N,), 4, torch.arange(N) % 5)}),
             (rlif_n, {"RLIF": lambda: RLIF((rlif_n,), backend=backend)}))
    for width, makers in cases:
        x = torch.randn(T, B, width).requires_grad_()
        lif = LIF(backend=backend)
        for name, make in makers.items():
            t, t_lif = paired_ms(make(), lif, x)
            rows.append((name, (T, B, width), t, t_lif, t / t_lif))
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("shape", nargs="*", type=int, default=[16, 64, 16384])
    p.add_argument("--rlif-n", type=int, default=1024)
    a = p.parse_args(argv)
    print("| model | shape [T, B, N] | fwd+bwd ms | LIF ms | ratio |")
    print("|---|---|---|---|---|")
    for name, shape, t, t_lif, r in ratios(*a.shape, a.rlif_n):
        print(f"| {name} | {list(shape)} | {t:.1f} | {t_lif:.1f} | {r:.2f} |")
        if name == "RLIF":
            gemm = rlif_gemm_ms(*shape)
            rlif_line = (f"RLIF's GEMMs alone: {gemm:.1f} ms = {100 * gemm / t:.0f}% of its "
                         f"fwd+bwd, {gemm / t_lif:.1f}x LIF's whole fwd+bwd")
            layer = RLIF((shape[2],), backend="cpu")
            x = torch.randn(*shape).requires_grad_()
            one, steps = paired_ms(layer, _ThroughTheOps(layer), x)
            node_line = (f"RLIF as one node {one:.1f} ms, as per-step ops {steps:.1f} ms "
                         f"({steps / one:.2f}x)")
    print(rlif_line)
    print(node_line)
    print(f"threads: {torch.get_num_threads()}, load average (1 min): {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
