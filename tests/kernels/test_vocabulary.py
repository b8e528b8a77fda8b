"""One vocabulary for neuron kinds and surrogates, one op per operation, one backend per name,
and an import that stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import membra.kernels as K
from membra.functional import SURROGATES, NeuronKind


@pytest.mark.parametrize("bad", ["lfi", "LIF ", "", "integrate", 1, None])
def test_unknown_neuron_kind_is_named(bad):
    x = torch.ones(2, 1, 3)
    with pytest.raises((ValueError, TypeError), match=r"neuron=.*'lif'.*'if'"):
        K.neuron_sequence(x, neuron=bad)


@pytest.mark.parametrize("kind", list(NeuronKind))
def test_kind_parses_from_its_name_and_itself(kind):
    assert NeuronKind.parse(kind.value) is kind and NeuronKind.parse(kind) is kind


def test_kind_enum_runs_like_its_name():
    x = torch.randn(4, 2, 5)
    a = K.neuron_sequence(x, neuron=NeuronKind.IF)
    b = K.neuron_sequence(x, neuron="if")
    torch.testing.assert_close(a, b)


def test_register_backend_refuses_a_duplicate_name():
    with pytest.raises(ValueError, match="'reference'.*already"):
        K.register_backend("reference", lambda *a, **k: None)
    assert K.select_backend("reference", torch.device("cpu")).name == "reference"


def test_kernel_codes_come_from_one_table():
    # the C++ enum and the Triton branches use the codes of the Python table
    src = (Path(K.__file__).parent / "csrc" / "neuron_cpu.cpp").read_text()
    enum = dict((m[0].lower(), int(m[1]))
                for m in re.findall(r"\b([A-Z]+) = (\d+)", src.split("enum Surrogate")[1]
                                    .split("}")[0]))
    want = {s.name: s.code for s in SURROGATES.values()}
    assert {k: v for k, v in enum.items() if k in want} == want
    assert set(want.values()) == {0, 1, 2, 3}
    triton_src = (Path(K.__file__).parent / "_triton_kernels.py").read_text()
    for s in SURROGATES.values():
        assert f"SG == {s.code}:  # {s.name}" in triton_src


def test_one_op_per_operation_dispatched_by_device():
    from membra.kernels import fused

    op = torch.ops.membra.neuron_fwd.default
    assert fused.OPS == ("membra::neuron_fwd", "membra::neuron_bwd", "membra::neuron_infer",
                         "membra::neuron_h", "membra::neuron_bwd_cols")
    x = torch.randn(3, 5)
    s, vT, h, v = op(x, torch.zeros(5), torch.tensor(2.0), 0, True, 1.0, 0.0, 0, 4.0, True,
                     False, False)
    assert s.shape == (3, 5) and h.numel() == 0 and v.numel() == 0


def test_import_membra_does_not_import_dynamo():
    code = "import membra, membra.kernels, membra.nn, sys; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
