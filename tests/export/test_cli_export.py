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


def test_export_torch_program_runs_without_membra(run_dir, tmp_path):
    # the .pt2 is plain ATen ops: a fresh process loads and runs it without importing membra
    import json
    import subprocess
    import sys

    from membra.cli._runs import load_run_model

    out = tmp_path / "m.pt2"
    res = CliRunner().invoke(app, ["export", "torch", run_dir, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "outputs match" in res.output and "batch" in res.output  # the batch size is free
    model, in_shape, _ = load_run_model(run_dir)
    x = torch.rand(4, 5, *in_shape, generator=torch.Generator().manual_seed(2))
    torch.save(x, tmp_path / "x.pt")
    code = (f"import sys, json, torch; m = torch.export.load({str(out)!r}).module(); "
            f"y = m(torch.load({str(tmp_path / 'x.pt')!r})); torch.save(y, "
            f"{str(tmp_path / 'y.pt')!r}); "
            "print(json.dumps(sorted(k for k in sys.modules if k.startswith('membra'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "y.pt"), model(x), atol=1e-5,
                                   rtol=1e-5)


def test_export_torch_missing_run(tmp_path):
    res = CliRunner().invoke(app, ["export", "torch", str(tmp_path / "nope"), "--out",
                                   str(tmp_path / "m.pt2")])
    assert res.exit_code != 0 and "not found" in res.output
    assert not (tmp_path / "m.pt2").exists()


def test_export_program_keeps_a_batch_the_model_fixes():
    from membra.export import export_program
    from membra.nn import LIF

    class FixedBatch(torch.nn.Module):  # reshapes with the batch size written in
        def __init__(self):
            super().__init__()
            self.lif = LIF(shape=(6,))

        def forward(self, x):
            return self.lif(x.reshape(x.shape[0], 2, 6))

    model = FixedBatch()
    program, dynamic = export_program(model, (6,), 3)
    assert not dynamic
    x = torch.rand(3, 2, 6)
    torch.testing.assert_close(program.module()(x), model(x))
    program, dynamic = export_program(LIF(shape=(6,)), (6,), 3)
    assert dynamic
    x = torch.rand(3, 9, 6)
    torch.testing.assert_close(program.module()(x), LIF(shape=(6,))(x))
    with pytest.raises(ValueError, match="T and batch"):
        export_program(model, (6,), 0)
