"""ConvertedSNN.schedule(): the emission windows and time steps from the levels alone, equal
to what the temporal simulation runs (both neurons) and to the longest path's 1 + sum L."""

import pytest
from convert_cases import random_cnn, tie_cnn
from fx_cases import random_dag, unet

from membra.convert import to_snn
from membra.experiments.latency import pascal_steps

CASES = [(random_dag, s) for s in range(8)] + [(unet, 0), (tie_cnn, 0), (random_cnn, 1)]
IDS = [f"{b.__name__}-{s}" for b, s in CASES]


def _longest_sum_L(snn) -> int:
    """1 + the largest sum of levels over the paths from the input to the output."""
    best = {}
    for i, op in enumerate(snn.ops):
        here = op.module.L if op.kind == "qcfs" else 0
        best[i] = here + max((best[j] for j in op.inputs), default=0)
    return 1 + best[len(snn.ops) - 1]


@pytest.mark.parametrize("neuron", ["two_phase", "signed"])
@pytest.mark.parametrize("build,seed", CASES, ids=IDS)
def test_schedule_equals_the_simulation(build, seed, neuron):
    model, x = build(seed)
    x = x.float()
    snn = to_snn(model, "pascal", neuron=neuron)
    total = snn.schedule()                       # before any forward pass
    planned = dict(snn.windows)
    assert pascal_steps(snn) == total
    snn(x)
    assert snn.windows == planned and snn.time_steps == total
    counted = to_snn(model, "pascal", neuron=neuron, simulate="counts")
    counted(x)
    assert counted.windows == planned and counted.time_steps == total
    if neuron == "two_phase":
        assert total == _longest_sum_L(snn)
    else:
        assert total > _longest_sum_L(snn)       # the correction steps come on top


@pytest.mark.parametrize("T", [1, 4, 9])
def test_schedule_of_naive_is_T_everywhere(T):
    model, x = random_cnn(0)
    snn = to_snn(model, "naive", T=T, allow_spike_maxpool=True)
    assert snn.schedule() == T
    assert set(snn.windows.values()) == {(0, T)}
