"""`membra export nir` and `membra report sops` on a tiny IMP-study run."""

import pytest
import torch
from typer.testing import CliRunner

from membra.cli import app


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    pytest.importorskip("sklearn")
    from membra.experiments.study import run_arm

    m = run_arm("configs/study/digits/imp_lts.toml", out_dir=tmp_path_factory.mktemp("runs"),
                overrides=["train.epochs=1", "model.options.hidden=[16, 16]",
                           "run.progress=false", "run.plots=false"], log=lambda *_: None)
    return m["run_dir"]


def test_export_nir_round_trip(run_dir, tmp_path):
    pytest.importorskip("nir")
    from membra.cli._runs import load_run_model
    from membra.export import from_nir, read_nir

    out = tmp_path / "m.nir"
    res = CliRunner().invoke(app, ["export", "nir", run_dir, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "outputs match" in res.output
    model, _, _ = load_run_model(run_dir)
    back = from_nir(read_nir(out))
    lif = [m for m in back if hasattr(m, "init_potential")]
    ref = [m for m in model.body if hasattr(m, "init_potential")]
    assert len(lif) == len(ref) == 2
    for a, b in zip(lif, ref, strict=True):     # the learned IMP survived the trip
        assert torch.equal(a.init_potential, b.init_potential.detach())


def test_export_missing_run(tmp_path):
    res = CliRunner().invoke(app, ["export", "nir", str(tmp_path / "nope"), "--out",
                                   str(tmp_path / "m.nir")])
    assert res.exit_code != 0 and "not found" in res.output


def test_report_sops(run_dir):
    res = CliRunner().invoke(app, ["report", "sops", run_dir, "--batch", "32"])
    assert res.exit_code == 0, res.output
    assert "ANN, same size" in res.output and "analog, static (once)" in res.output
