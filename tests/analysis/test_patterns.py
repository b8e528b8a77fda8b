"""Pattern counts of the membrane-dynamics spec §8, cross-checked against a scalar loop."""

import itertools

import pytest
import torch

from membra.analysis import (
    GRID_A_WEIGHTS,
    GRID_B_POTENTIALS,
    GRID_B_WEIGHTS,
    format_train,
    pattern_counts,
    spike_trains,
    train_code,
)
from membra.functional import NeuronKind

GRID_B = dict(weights=GRID_B_WEIGHTS, potentials=GRID_B_POTENTIALS)


def scalar_loop(b, w, v0, reset="soft", strict=False):
    """Plain-Python IF neuron, v_th = 1, the §3 equations written out."""
    v, out = v0, []
    for bt in b:
        h = v + w * bt
        s = int(h > 1.0) if strict else int(h >= 1.0)
        v = h - s if reset == "soft" else h * (1 - s)
        out.append(s)
    return out


def test_codes_step1_most_significant():
    trains = spike_trains(4)
    assert trains.shape == (16, 4)
    assert trains[8].tolist() == [1, 0, 0, 0]
    assert format_train(8) == "1000"
    assert torch.equal(train_code(trains), torch.arange(16))


def test_grid_a_fixed_potential():
    res = pattern_counts()
    assert res.pairs == 54
    assert res.mean_outputs == pytest.approx(3.375)
    assert res.per_input == (1, 2, 2, 3, 2, 3, 3, 5, 2, 3, 3, 5, 3, 5, 5, 7)
    assert [format_train(c) for c in res.outputs(15)] == \
        ["0000", "0001", "0010", "0101", "0110", "0111", "1111"]


def test_grid_b_swept_potential():
    res = pattern_counts(**GRID_B)
    assert res.pairs == 108
    assert res.mean_outputs == pytest.approx(6.75)
    assert res.per_input == (2, 4, 4, 7, 4, 7, 7, 13, 3, 5, 5, 9, 5, 9, 9, 15)
    missing = set(range(16)) - set(res.outputs(15))
    assert [format_train(c) for c in missing] == ["1100"]


@pytest.mark.parametrize("reset,strict", [("soft", False), ("soft", True), ("hard", False)])
def test_matrix_equals_scalar_loop(reset, strict):
    res = pattern_counts(reset=reset, fire=">" if strict else ">=", **GRID_B)
    ref = torch.zeros(16, 16, dtype=torch.int64)
    for code, (w, v0) in itertools.product(range(16), itertools.product(GRID_B_WEIGHTS,
                                                                         GRID_B_POTENTIALS)):
        b = spike_trains(4)[code].tolist()
        ref[code, int("".join(map(str, scalar_loop(b, w, v0, reset, strict))), 2)] = 1
    assert torch.equal(res.matrix, ref)


def test_sensitivities_negative():
    # strict firing, hard reset and a one-sided V_0 range all change the counts
    assert pattern_counts(fire=">").pairs == 39
    assert pattern_counts(fire=">", **GRID_B).pairs == 80
    assert pattern_counts(reset="hard").pairs == 48
    assert pattern_counts(reset="hard", **GRID_B).pairs == 91
    half = [p for p in GRID_B_POTENTIALS if p >= 0]
    assert pattern_counts(weights=GRID_B_WEIGHTS, potentials=half).pairs == 107


def test_lif_never_fires_from_rest():
    res = pattern_counts(neuron="lif", tau=2.0)
    assert res.pairs == 16 and res.matrix[:, 0].sum() == 16


@pytest.mark.parametrize("kind", [NeuronKind.IF, NeuronKind.LIF], ids=lambda k: k.value)
@pytest.mark.parametrize("fire,reset", [(">=", "soft"), (">", "soft"), (">=", "hard")])
@pytest.mark.parametrize("grid", [{}, GRID_B], ids=["A", "B"])
def test_a_neuron_kind_counts_as_its_name(kind, fire, reset, grid):
    """membra's NeuronKind vocabulary and its names give the same matrix, on both grids, for
    both firing rules (kernel and strict loop) and both resets."""
    by_kind = pattern_counts(neuron=kind, fire=fire, reset=reset, tau=1.7, **grid)
    by_name = pattern_counts(neuron=kind.value, fire=fire, reset=reset, tau=1.7, **grid)
    assert torch.equal(by_kind.matrix, by_name.matrix)
    if kind is NeuronKind.IF:  # IF ignores tau: the defaults' counts
        assert torch.equal(by_kind.matrix, pattern_counts(fire=fire, reset=reset,
                                                          **grid).matrix)


@pytest.mark.parametrize("neuron", [k for k in NeuronKind if k.value not in ("if", "lif")]
                         + [k.value for k in NeuronKind if k.value not in ("if", "lif")]
                         + ["IF", "lif ", "", None, 1])
def test_other_neurons_are_refused_naming_the_two_kinds(neuron):
    with pytest.raises(ValueError, match=r"neuron=.*\['if', 'lif'\]"):
        pattern_counts(neuron=neuron)


def test_denser_grid_same_totals():
    assert pattern_counts(weights=torch.linspace(0, 1, 257, dtype=torch.float64)).pairs == 54
    dense = pattern_counts(weights=torch.linspace(0, 1, 65, dtype=torch.float64),
                           potentials=torch.linspace(-1, 1, 65, dtype=torch.float64))
    assert dense.pairs == 108


def test_grid_a_defaults():
    assert len(GRID_A_WEIGHTS) == 17 and GRID_A_WEIGHTS[1] == 1 / 16


@pytest.mark.parametrize("kw,match", [
    (dict(T=0), "T must"), (dict(neuron="alif"), "neuron="), (dict(fire="=>"), "fire="),
    (dict(reset="zero"), "reset="), (dict(weights=[]), "weights"),
    (dict(potentials=[float("nan")]), "potentials"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        pattern_counts(**kw)


def test_cli_report_patterns(tmp_path):
    from typer.testing import CliRunner

    from membra.cli import app

    res = CliRunner().invoke(app, ["report", "patterns", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "108" in res.output and "54" in res.output
    md = (tmp_path / "patterns.md").read_text()
    assert "| distinct (input, output) pairs | 54 | 108 |" in md
    assert (tmp_path / "patterns.png").stat().st_size > 1000
