"""Firing-rate fluctuation measures and the mean-current oracle of the DWAM diagnosis."""

import copy

import numpy as np
import pytest
import torch

from membra.control import PopSANActor
from membra.control.degrade import weight_gn, weight_zero
from membra.control.diagnose import current_shift, mean_current_oracle, presynaptic_rates
from membra.control.evaluate import _layer_stats, temporal_cv
from membra.control.sweep import draws_markdown, markdown_table


def _np_cv(x):
    """Reference temporal CV: numpy std (ddof 0) / mean over axis 0; 0 where the mean is 0."""
    m = x.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(m > 0, x.std(0) / m, 0.0)


@pytest.mark.parametrize("steps,n,seed", [(1, 3, 0), (7, 5, 1), (200, 33, 2), (13, 1, 3)])
def test_layer_stats_match_a_numpy_reference(steps, n, seed):
    rng = np.random.default_rng(seed)
    r = rng.integers(0, 6, size=(steps, n)) / 5.0  # rates of T = 5 steps take 6 values
    r[:, 0] = 0.0  # a silent neuron
    st = _layer_stats([torch.tensor(row, dtype=torch.float32) for row in r], None)
    assert st["cv"] == pytest.approx(_np_cv(r).mean(), rel=1e-6, abs=1e-9)
    assert st["pop_cv"] == pytest.approx(float(_np_cv(r.mean(1))), rel=1e-6, abs=1e-9)
    assert st["rate_std"] == pytest.approx(r.std(0).mean(), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("n", [2, 6, 64])
def test_population_cv_separates_neuron_and_layer_fluctuation(n):
    """Neurons firing in antiphase: every neuron fluctuates (CV 1), the layer's rate does
    not (population CV 0); all firing together: both fluctuate."""
    half = torch.tensor([1.0, 0.0] * (n // 2))
    anti = [half, 1 - half] * 10
    sync = [torch.ones(n), torch.zeros(n)] * 10
    a, s = _layer_stats(anti, None), _layer_stats(sync, None)
    assert a["cv"] == pytest.approx(1.0) and a["pop_cv"] == pytest.approx(0.0, abs=1e-12)
    assert s["cv"] == pytest.approx(1.0) and s["pop_cv"] == pytest.approx(1.0)


def test_temporal_cv_of_a_silent_or_constant_series_is_zero():
    assert float(temporal_cv(torch.zeros(9, dtype=torch.float64)[:, None])) == 0.0
    assert float(temporal_cv(torch.full((9, 1), 0.4, dtype=torch.float64))) == \
        pytest.approx(0.0, abs=1e-12)


def _sweep(pop: bool):
    """A two-draw sweep dict as run_sweep returns it; ``pop=False``: one written before the
    population CV existed."""
    def row(cond, sev, dwam, mean, cv, pc):
        d = {"mean": mean, "std": 1.0, "n": 2, "rate_dev": 0.1, "cv": cv, "drift": 0.0,
             "returns": [mean, mean]}
        layers = {"layers.0": {"cv": cv, "rate_dev": 0.1, "drift": 0.0},
                  "layers.1": {"cv": cv, "rate_dev": 0.1, "drift": 0.0}}
        if pop:
            d["pop_cv"] = pc
            layers["layers.0"]["rate_std"], layers["layers.1"]["rate_std"] = pc, 3 * pc
        r = {"condition": cond, "severity": sev, "dwam": dwam, **d, "layers": layers,
             "draws": [d, dict(d)]}
        return r
    rows = [row("healthy", None, False, -100.0, 1.5, 0.31), row("healthy", None, True,
                                                                 -100.0, 1.5, 0.32),
            row("weight_gn", 0.05, False, -300.0, 1.6, 0.456),
            row("weight_gn", 0.05, True, -200.0, 1.7, 0.123)]
    for r in rows[:2]:
        r["draws"] = r["draws"][:1]
    return {"rows": rows, "env_id": "Pendulum-v1"}


def test_reports_show_the_population_cv_off_and_on():
    table = markdown_table(_sweep(True))
    assert "pop. rate CV off/on" in table and "0.456 / 0.123" in table
    assert "rate std off/on" in table and "0.912 / 0.246" in table  # mean over layers
    assert "0.456 / 0.123" in draws_markdown(_sweep(True))


def test_reports_written_before_the_population_cv_say_n_a():
    table = markdown_table(_sweep(False))
    assert "n/a / n/a" in table and "nan" not in table
    assert "n/a / n/a" in draws_markdown(_sweep(False))


# ---- the mean-current oracle ---------------------------------------------------------------

def _pre_rates(actor, gen):
    return {n: torch.rand(lin.in_features, generator=gen) for n, lin, _ in
            actor.synaptic_layers()}


@pytest.mark.parametrize("hidden,seed,damage", [((7, 13), 0, "gn"), ((5,), 1, "zero"),
                                                ((33, 17, 9), 2, "gn"), ((3, 3), 3, "zero")])
def test_oracle_restores_every_mean_current_and_nothing_else(hidden, seed, damage):
    torch.manual_seed(seed)
    healthy = PopSANActor(3, 2, hidden=hidden).eval()
    dmg = (weight_gn(healthy, 0.05, seed=seed) if damage == "gn"
           else weight_zero(healthy, 0.3, seed=seed))
    before = {k: v.clone() for k, v in dmg.state_dict().items()}
    h_before = {k: v.clone() for k, v in healthy.state_dict().items()}
    pre = _pre_rates(healthy, torch.Generator().manual_seed(seed))
    fixed = mean_current_oracle(healthy, dmg, pre)
    for (name, lh, _), (_, ld, _), (_, lf, _) in zip(
            healthy.synaptic_layers(), dmg.synaptic_layers(), fixed.synaptic_layers(),
            strict=True):
        c = pre[name]
        # mean current at the healthy pre rates: healthy == oracle, damaged differs
        ref = lh.weight.double() @ c.double() + lh.bias.double()
        torch.testing.assert_close(lf(c).double(), ref, rtol=1e-5, atol=1e-5)
        assert torch.equal(lf.weight, ld.weight)  # weights stay damaged
        # the correction is the plain formula: b~ + (W - W~) c
        torch.testing.assert_close(lf.bias, ld.bias + (lh.weight - ld.weight) @ c)
    for k, v in dmg.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in healthy.state_dict().items():
        assert torch.equal(v, h_before[k]), k


def test_oracle_of_an_undamaged_model_changes_nothing():
    healthy = PopSANActor(4, 1, hidden=(11, 6)).eval()
    pre = _pre_rates(healthy, torch.Generator().manual_seed(0))
    fixed = mean_current_oracle(healthy, healthy, pre)
    for k, v in healthy.state_dict().items():
        assert torch.equal(fixed.state_dict()[k], v), k


@pytest.mark.parametrize("bad,match", [
    ("missing", "pre_rates has no entry for layer 'layers.1'"),
    ("shape", r"layer 'layers.0'.*pre_rates \(4,\)"),
    ("arch", "differ in synaptic layers")])
def test_oracle_names_what_does_not_match(bad, match):
    healthy = PopSANActor(3, 1, hidden=(8, 8)).eval()
    other = PopSANActor(3, 1, hidden=(8,)).eval() if bad == "arch" else healthy
    pre = _pre_rates(healthy, torch.Generator().manual_seed(0))
    if bad == "missing":
        del pre["layers.1"]
    if bad == "shape":
        pre["layers.0"] = torch.rand(4)
    with pytest.raises(ValueError, match=match):
        mean_current_oracle(healthy, other, pre)


class _ObsEnv:
    """A tiny env: observations from a fixed generator, ``length`` steps per episode."""

    def __init__(self, length=6):
        self.length = length

    def reset(self, seed=None):
        self.rng, self.t = np.random.default_rng(seed), 0
        return self.rng.normal(size=3).astype(np.float32), {}

    def step(self, a):
        self.t += 1
        return (self.rng.normal(size=3).astype(np.float32), 0.0, False,
                self.t >= self.length, {})

    def close(self):
        pass


@pytest.mark.parametrize("episodes,length", [(1, 1), (2, 6), (3, 11)])
def test_presynaptic_rates_match_a_plain_rollout(episodes, length):
    torch.manual_seed(episodes)
    actor = PopSANActor(3, 1, hidden=(9, 5), encoding="deterministic").eval()
    got = presynaptic_rates(actor, lambda: _ObsEnv(length), episodes, seed=7)
    sums, n = None, 0
    env = _ObsEnv(length)
    with torch.no_grad():
        for e in range(episodes):
            obs, _ = env.reset(seed=7 + e)
            while True:
                spikes = actor.spikes(torch.as_tensor(obs)[None])
                rates = [s.mean((0, 1)).double() for s in spikes[:-1]]  # input of each layer
                sums = rates if sums is None else [a + b for a, b in zip(sums, rates,
                                                                         strict=True)]
                n += 1
                obs, _, term, trunc, _ = env.step(actor.act(obs))
                if term or trunc:
                    break
    for (name, _, _), s in zip(actor.synaptic_layers(), sums, strict=True):
        torch.testing.assert_close(got[name], (s / n).float())


@pytest.mark.parametrize("hidden,seed", [((7, 13), 0), ((33, 17, 9), 1), ((5,), 2)])
def test_current_shift_is_one_for_the_exact_correction_and_zero_for_none(hidden, seed):
    torch.manual_seed(seed)
    healthy = PopSANActor(3, 2, hidden=hidden).eval()
    dmg = weight_gn(healthy, 0.05, seed=seed)
    pre = _pre_rates(healthy, torch.Generator().manual_seed(seed))
    none = current_shift(healthy, dmg, dmg, pre)
    assert all(v["achieved"] == 0 and v["ratio"] == 0 and v["cos"] == 0 for v in none.values())
    back = current_shift(healthy, dmg, healthy, pre)  # the healthy weights restored
    for v in back.values():
        assert v["ratio"] == pytest.approx(1.0) and v["cos"] == pytest.approx(1.0)
    half = copy.deepcopy(healthy)
    for (_, lh, _), (_, ld, _), (_, l2, _) in zip(healthy.synaptic_layers(),
                                                   dmg.synaptic_layers(),
                                                   half.synaptic_layers(), strict=True):
        l2.weight.data = ld.weight.data - 0.5 * (ld.weight.data - lh.weight.data)  # halfway
    for name, v in current_shift(healthy, dmg, half, pre).items():
        lh = dict((n, lin) for n, lin, _ in healthy.synaptic_layers())[name]
        ld = dict((n, lin) for n, lin, _ in dmg.synaptic_layers())[name]
        need = ((lh.weight - ld.weight).detach().double() @ pre[name].double()).norm()
        assert v["needed"] == pytest.approx(float(need))
        assert v["ratio"] == pytest.approx(0.5) and v["cos"] == pytest.approx(1.0)


# ---- the BCM threshold rate on the command line ---------------------------------------------

@pytest.mark.parametrize("verb", [["sweep", "pendulum", "--conditions", "healthy"],
                                  ["eval", "pendulum"]])
@pytest.mark.parametrize("bad", ["0", "1.5", "-0.1"])
def test_a_theta_out_of_range_is_a_usage_error_naming_it(verb, bad):
    pytest.importorskip("gymnasium")
    from typer.testing import CliRunner

    from membra.cli import app

    r = CliRunner().invoke(app, ["control", *verb, "--a-theta", bad])
    assert r.exit_code == 2 and "a_theta must be in (0, 1]" in r.output, r.output


@pytest.mark.parametrize("a_theta", [0.3, 0.07, 1.0])
def test_a_theta_reaches_the_sweeps_dwam_config(a_theta, monkeypatch, tmp_path):
    pytest.importorskip("gymnasium")
    from typer.testing import CliRunner

    import membra.control.sweep as sw
    from membra.cli import app

    seen = {}

    def fake_run_sweep(run, dwam_config=None, **kw):
        seen["cfg"] = dwam_config
        raise SystemExit(0)

    monkeypatch.setattr(sw, "run_sweep", fake_run_sweep)
    r = CliRunner().invoke(app, ["control", "sweep", "pendulum", "--conditions", "healthy",
                                 "--a-theta", str(a_theta), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert seen["cfg"].a_theta == a_theta and seen["cfg"].eta == 1e-4  # the rest as shipped
