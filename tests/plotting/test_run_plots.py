"""Run plots: traces recorded from real layers, written by fit and by ``membra eval --plots``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("matplotlib")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

from _tiny import TINY_TOML, patch, tiny_model  # noqa: E402

from membra.nn import ALIF, IF, LIF, RLIF, CubaLIF  # noqa: E402
from membra.train import evaluate_run, fit  # noqa: E402
from membra.train.config import parse_config  # noqa: E402
from membra.train.plots import sample_traces, write_run_plots  # noqa: E402

HISTORY_PNGS = {"curves.png", "per_step_accuracy.png", "firing_rate.png", "init_potential.png"}
TRACE_PNGS = {"raster.png", "potential.png", "rate_heatmap.png", "dead_saturated.png"}


def _layer(kind, reset, v0, S, seed):
    torch.manual_seed(seed)
    cls = LIF if kind == "lif" else IF
    kw = {"tau": 1.5 + seed} if kind == "lif" else {}
    return cls(shape=S, reset=reset, v_th=0.8, v_reset=-0.1 if reset == "hard" else 0.0,
               init_potential=v0, **kw)


@pytest.mark.parametrize("kind", ["lif", "if"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("v0,S", [(0.0, (5,)), (0.3, (2, 3)), ("learnable", (7,))])
def test_recorded_traces_match_the_layers(kind, reset, v0, S):
    a, b = _layer(kind, reset, v0, S, 0), _layer(kind, reset, v0, S, 1)
    model = nn.Sequential(a, nn.Flatten(2), nn.Linear(int(torch.tensor(S).prod()), 4),
                          nn.Unflatten(2, (4,)), b)
    b.shape = None  # the second layer takes [T, B, 4]; its V_0 must then be a number
    if v0 == "learnable":
        b.init_potential = nn.Parameter(torch.tensor(0.2))
    x = 2 * torch.randn(5, 3, *S)
    traces = sample_traces(model, x)
    assert list(traces) == ["0", "4"]
    s_a, v_a = a.run(x)
    s_b, v_b = b.run(model[1:4](s_a))
    for (s, v, h), (s_ref, v_last), m in zip(traces.values(), ((s_a, v_a), (s_b, v_b)),
                                             (a, b), strict=True):
        assert torch.equal(s, s_ref)                       # the layer's own spikes
        torch.testing.assert_close(v[-1], v_last)          # the layer's own final potential
        assert torch.equal(s, (h >= m.v_th).float())       # h is the potential that fired
        after = h - m.v_th * s if reset == "soft" else torch.where(s > 0, m.v_reset, h)
        torch.testing.assert_close(v, after)


@pytest.mark.parametrize("cls", [CubaLIF, ALIF, RLIF])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_neuron_model_is_traced_and_plotted(cls, seed, tmp_path):
    # the former hook-and-replay recorder skipped these models (LIF/IF only)
    torch.manual_seed(seed)
    S = (3 + seed,)
    model = nn.Sequential(nn.Linear(5, S[0]), cls(shape=S, init_potential="learnable"),
                          nn.Linear(S[0], S[0]), LIF(shape=S))
    x = 3 * torch.rand(6, 2, 5)
    traces = sample_traces(model, x)
    assert list(traces) == ["1", "3"]
    s_ref, state = model[1].run(model[0](x))
    assert torch.equal(traces["1"].spikes, s_ref)
    torch.testing.assert_close(traces["1"].v[-1], state[0])
    files = write_run_plots(tmp_path, model=model, sample=x)
    assert TRACE_PNGS <= {p.name for p in files}


def _tiny_cfg(tmp_path, *sets):
    return parse_config(TINY_TOML, [f"run.out_dir='{tmp_path}'", *sets])


def test_fit_writes_history_and_trace_plots(tmp_path, monkeypatch):
    patch(monkeypatch)
    out = fit(_tiny_cfg(tmp_path, "run.plots=true"), device="cpu")
    run = Path(out["run_dir"])
    assert {p.name for p in (run / "plots").glob("*.png")} == HISTORY_PNGS | TRACE_PNGS


def test_eval_plots_cli_writes_into_out(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from membra.cli import app

    patch(monkeypatch)
    run = Path(fit(_tiny_cfg(tmp_path), device="cpu")["run_dir"])
    assert not (run / "plots").exists()
    res = CliRunner().invoke(app, ["eval", str(run), "--plots", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert {p.name for p in (tmp_path / "p").glob("*.png")} == HISTORY_PNGS | TRACE_PNGS
    assert "plots: 8 files" in res.output
    ev = evaluate_run(run, plots=True, show=False)  # default folder: the run's plots/
    assert {Path(p).parent for p in ev["plots"]} == {run / "plots"}


def test_missing_matplotlib_stops_a_run_before_training(tmp_path, monkeypatch):
    patch(monkeypatch)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'membra\[plot\]'"):
        fit(_tiny_cfg(tmp_path, "run.plots=true"), device="cpu")
    assert not any(tmp_path.rglob("*.safetensors"))
    with pytest.raises(ImportError, match=r"pip install 'membra\[plot\]'"):
        write_run_plots(tmp_path, [], tiny_model())
