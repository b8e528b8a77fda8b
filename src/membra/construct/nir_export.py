"""Export a :class:`~membra.construct.circuit.SpikingCircuit` to NIR (``nir`` package).

Layout: one ``nir.Input`` with every input line (clock first when the circuit has one), one
``nir.LIF`` node per topological layer (``lif_<l>``), one ``nir.Linear`` per non-zero block of
weights (``w_in_<l>`` from the input, ``w_<k>_<l>`` from layer ``k``), and a ``nir.Linear``
that picks the output neuron into ``nir.Output``. NIR has no flag for the strict threshold,
the clamp at 0, the reset at the step after a spike or the zero-delay cascade; these are
stated in the graph's ``metadata`` (``"membra.construct"``) together with the exact ``lam``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["to_nir"]


def to_nir(circ):
    try:
        import nir
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("SpikingCircuit.to_nir() needs the 'nir' package: "
                          "pip install 'membra[export]'") from e
    w_in, w_nn = circ.float_matrices()
    sizes = [len(layer) for layer in circ.layers]
    starts = np.cumsum([0, *sizes])
    n_in = len(circ.inputs)
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    edges = []
    h = circ.h
    for ell, size in enumerate(sizes):
        lo, hi = starts[ell], starts[ell + 1]
        nodes[f"lif_{ell}"] = nir.LIF(
            tau=np.full(size, h), r=np.ones(size), v_leak=np.zeros(size),
            v_threshold=np.ones(size), v_reset=np.zeros(size),
            metadata={"neurons": list(circ.neurons[lo:hi])})
        if np.any(w_in[lo:hi]):
            nodes[f"w_in_{ell}"] = nir.Linear(weight=w_in[lo:hi].copy())
            edges += [("input", f"w_in_{ell}"), (f"w_in_{ell}", f"lif_{ell}")]
        for k in range(ell):
            block = w_nn[lo:hi, starts[k]:starts[k + 1]]
            if np.any(block):
                nodes[f"w_{k}_{ell}"] = nir.Linear(weight=block.copy())
                edges += [(f"lif_{k}", f"w_{k}_{ell}"), (f"w_{k}_{ell}", f"lif_{ell}")]
    out = circ.neurons.index(circ.output)
    out_layer = int(np.searchsorted(starts, out, side="right") - 1)
    pick = np.zeros((1, sizes[out_layer]))
    pick[0, out - starts[out_layer]] = 1.0
    nodes["pick_out"] = nir.Linear(weight=pick)
    nodes["output"] = nir.Output(output_type={"output": np.array([1])})
    edges += [(f"lif_{out_layer}", "pick_out"), ("pick_out", "output")]
    meta = {"membra.construct": {
        "lam": str(circ.lam), "dt": 1.0, "inputs": list(circ.inputs),
        "requires_clock": circ.requires_clock,
        "semantics": "integer grid; U = lam*V*(1-S_prev) + W S(t) + A X(t); V = max(U, 0); "
                     "S = V > 1 (strict); zero synaptic delay (same-step cascade in "
                     "topological layer order); reset to 0 at the step after a spike",
        "synapses": [[s.src, s.dst, str(s.weight)] for s in circ.synapses],
    }}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
