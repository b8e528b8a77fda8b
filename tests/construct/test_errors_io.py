"""Spec test 6 (rejections), clear errors, JSON round trip and NIR export."""

import json

import numpy as np
import pytest

from membra.construct import (
    CyclicCircuitError,
    NotInputDominatedError,
    SpikeRule,
    SpikingCircuit,
    compile_rule,
)


def test_clock_false_on_silent_window_rejected():
    rule = SpikeRule.from_table([1, 0, 0, 1], 2)  # g(00) = 1
    assert not rule.is_input_dominated
    for method in ("baseline", "compact"):
        with pytest.raises(NotInputDominatedError, match="clock"):
            compile_rule(rule, method=method, clock=False)
    with pytest.raises(NotInputDominatedError):
        compile_rule(rule, method="compact")
    # with the clock the baseline represents it
    X = (np.random.default_rng(0).random((500, 1)) < 0.3).astype(np.int8)
    np.testing.assert_array_equal(compile_rule(rule).simulate(X), rule(X))


def test_baseline_needs_clock():
    with pytest.raises(ValueError, match="baseline construction needs a clock line"):
        compile_rule(SpikeRule.from_pattern([1, 1]), clock=False)


def test_method_errors():
    rule = SpikeRule.from_pattern([1, 1])
    with pytest.raises(ValueError, match="method='nope' is not known"):
        compile_rule(rule, method="nope")
    with pytest.raises(ValueError, match=r"choose one of \['baseline', 'compact'\]"):
        compile_rule(rule, method="paper")
    with pytest.raises(ValueError, match="needs m="):
        compile_rule([0, 1, 0, 1])
    assert compile_rule([0, 1, 0, 1], 2).n_neurons == 2 * 2 + 3 + 2


def test_cyclic_circuit_rejected():
    with pytest.raises(CyclicCircuitError, match="cycle"):
        SpikingCircuit(["x0"], ["A", "B"], [("x0", "A", 1), ("A", "B", 2), ("B", "A", 2)], "B")
    with pytest.raises(CyclicCircuitError, match="onto itself"):
        SpikingCircuit(["x0"], ["A"], [("A", "A", 1)], "A")
    d = compile_rule(SpikeRule.from_pattern([1, 0])).to_dict()
    d["synapses"].append(["OUT", "ODD", "1"])
    with pytest.raises(CyclicCircuitError):
        SpikingCircuit.from_dict(d)


def test_bad_circuits():
    with pytest.raises(ValueError, match="not a neuron"):
        SpikingCircuit(["x0"], ["A"], [("x0", "Z", 1)], "A")
    with pytest.raises(ValueError, match="neither an input line nor a neuron"):
        SpikingCircuit(["x0"], ["A"], [("y", "A", 1)], "A")
    with pytest.raises(ValueError, match="duplicate synapse"):
        SpikingCircuit(["x0"], ["A"], [("x0", "A", 1), ("x0", "A", 2)], "A")
    with pytest.raises(ValueError, match="rational like"):
        SpikingCircuit(["x0"], ["A"], [("x0", "A", "abc")], "A")
    with pytest.raises(ValueError, match="lam must be in"):
        SpikingCircuit(["x0"], ["A"], [], "A", lam=2)
    circ = SpikingCircuit(["x0"], ["A"], [("x0", "A", 2)], "A")
    with pytest.raises(ValueError, match="only 0 and 1"):
        circ.simulate(np.full((3, 1), 2))


def test_json_roundtrip(tmp_path):
    rule = SpikeRule.from_table(np.arange(16) % 5 == 1, 2, n_inputs=2)
    circ = compile_rule(rule)
    text = json.dumps(circ.to_dict())
    back = SpikingCircuit.from_dict(json.loads(text))
    assert back.to_dict() == circ.to_dict()
    assert "7/16" in text and back.lam.denominator == 2
    X = (np.random.default_rng(0).random((300, 2, 2)) < 0.5).astype(np.int8)
    np.testing.assert_array_equal(back.simulate(X), circ.simulate(X))
    path = circ.save(tmp_path / "c.json")
    assert SpikingCircuit.load(path).n_weights == circ.n_weights
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpikingCircuit.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="lacks the key"):
        SpikingCircuit.from_dict({"inputs": []})


def test_to_nir():
    nir = pytest.importorskip("nir")
    circ = compile_rule(SpikeRule.from_pattern([1, 0, 1]))
    g = circ.to_nir()
    assert isinstance(g, nir.NIRGraph)
    lifs = [k for k in g.nodes if k.startswith("lif_")]
    assert len(lifs) == circ.depth
    assert sum(g.nodes[k].tau.size for k in lifs) == circ.n_neurons
    meta = g.metadata["membra.construct"]
    assert meta["lam"] == "1/2" and "strict" in meta["semantics"]
    # every synapse appears as a non-zero entry of one Linear block
    nz = sum(int(np.count_nonzero(v.weight)) for k, v in g.nodes.items()
             if k.startswith("w_"))
    assert nz == circ.n_weights
