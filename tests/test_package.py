import re
import subprocess
import sys
from pathlib import Path

import membra

ROOT = Path(__file__).resolve().parents[1]


def test_public_names():
    from membra.functional import encode, if_step, lif_step, spike  # noqa: F401
    from membra.kernels import if_sequence, lif_sequence  # noqa: F401
    from membra.losses import ls_tet, lts_ce, mean_ce, tet  # noqa: F401
    from membra.metrics import per_step_accuracy  # noqa: F401
    from membra.nn import IF, LIF, Readout, TimeDistributed, param_groups  # noqa: F401

    assert re.fullmatch(r"\d+\.\d+\.\d+", membra.__version__)
    assert callable(membra.readout)


def test_torch_requirement_is_bounded():
    text = (ROOT / "pyproject.toml").read_text()
    reqs = re.findall(r'^\s*"(torch[^"]*)"', text, flags=re.M)
    assert reqs, "torch must be declared"
    for r in reqs:
        assert "<" in r or "==" in r, f"unbounded torch requirement {r!r}"


def test_cli_version():
    out = subprocess.run([sys.executable, "-m", "membra.cli", "--version"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"membra {membra.__version__}"
