"""The latency counts of membra.experiments.latency: PASCAL's effective per-layer step count,
the sequential latency 1 + ΣL, the naive T-to-threshold search and its "not by T" case, each
against a hand computation, a brute-force scan or an independent construction."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
import torch
from torch import nn

from membra.convert import build_net, replace_relu, set_L
from membra.convert.qcfs import qcfs_layers
from membra.experiments.latency import (
    T_to_reach,
    effective_T,
    effective_T_layer,
    fan_in,
    fmt_T,
    latency_counts,
    latency_markdown,
    naive_thresholds,
)


def _teff_exact(L: int, fan: int) -> Fraction:
    """The effective-step formula in exact rationals: L (1 + (5L-2) r) / (1 + L r), r = 4/(3f)."""
    r = Fraction(4, 3 * fan)
    return L * (1 + (5 * L - 2) * r) / (1 + L * r)


# ---- effective T --------------------------------------------------------------------------
@pytest.mark.parametrize("L,fan,expected", [
    (2, 4, Fraction(22, 5)),          # r = 1/3: 2 (1 + 8/3) / (1 + 2/3) = 22/5
    (1, 4, Fraction(3, 2)),           # r = 1/3: (1 + 1) / (1 + 1/3)
    (4, 1, Fraction(300, 19)),     # r = 4/3: 4 (1 + 24) / (1 + 16/3)
    (8, 576, None), (16, 147, None), (3, 27, None), (5, 7, None),
])
def test_effective_T_layer_hand_cases(L, fan, expected):
    want = _teff_exact(L, fan) if expected is None else expected
    assert effective_T_layer(L, fan) == pytest.approx(float(want), rel=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_effective_T_is_the_plain_mean_and_tends_to_L(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 17)
    levels = [rng.choice([1, 2, 3, 4, 5, 8, 16]) for _ in range(n)]
    fans = [rng.randint(1, 5000) for _ in range(n)]
    want = sum(_teff_exact(L, f) for L, f in zip(levels, fans, strict=True)) / n
    assert effective_T(levels, fans) == pytest.approx(float(want), rel=1e-12)
    # wide layers: T_eff -> L; every layer: L <= T_eff < 5 L (the cost ratio is below 5)
    assert effective_T(levels, [10 ** 9] * n) == pytest.approx(sum(levels) / n, rel=1e-6)
    for L, f in zip(levels, fans, strict=True):
        assert L <= effective_T_layer(L, f) < 5 * L


@pytest.mark.parametrize("bad", [(0, 4), (2, 0), (1.5, 4), (True, 4), (2, -3)])
def test_effective_T_layer_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="must be an int >= 1"):
        effective_T_layer(*bad)


def test_effective_T_needs_one_fan_in_per_level():
    with pytest.raises(ValueError, match="one fan-in per level"):
        effective_T([2, 2, 2], [9, 9])
    with pytest.raises(ValueError, match="one fan-in per level"):
        effective_T([], [])


@pytest.mark.parametrize("module,want", [
    (nn.Linear(37, 5), 37), (nn.Conv2d(6, 4, 3), 54), (nn.Conv2d(6, 9, (3, 5), groups=3), 30),
    (nn.Conv1d(5, 2, 7), 35), (nn.Conv2d(1, 8, 1), 1)])
def test_fan_in(module, want):
    assert fan_in(module) == want


# ---- 1 + ΣL and the per-site levels -------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 12, 12), (3, 9, 7), (23,)])
@pytest.mark.parametrize("depth", [3, 7, 13])
def test_latency_counts_of_vgg_small(shape, depth):
    rng = random.Random(depth * 100 + len(shape))
    torch.manual_seed(0)
    net = replace_relu(build_net("vgg_small", in_shape=shape, num_classes=10, depth=depth,
                                 width=3), L=2, lam_init=1.0)
    paths = list(qcfs_layers(net))
    levels = {p: rng.choice([1, 2, 3, 4, 8]) for p in paths}
    set_L(net, levels)
    c = latency_counts(net)
    assert len(c["levels"]) == depth == len(c["fan_ins"])
    assert c["levels"] == [levels[p] for p in paths]
    assert c["total"] == 1 + sum(levels.values()) and c["sum_L"] == sum(levels.values())
    assert c["max_L"] == max(levels.values())
    # the fan-ins of the weight layers in front of each QCFS, read off the modules directly
    weights = [m for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    assert c["fan_ins"] == [fan_in(m) for m in weights[:depth]]
    assert c["effective"] == pytest.approx(effective_T(c["levels"], c["fan_ins"]))
    # the SNN itself runs for exactly 1 + sum L steps
    from membra.convert import to_snn
    snn = to_snn(net.eval(), "pascal")
    snn(torch.rand(2, *shape))
    assert snn.time_steps == c["total"]


def test_latency_counts_of_a_residual_net_take_the_longest_path():
    from membra.convert import Residual
    torch.manual_seed(1)
    body = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6))
    net = replace_relu(nn.Sequential(nn.Linear(5, 6), nn.ReLU(), Residual(body), nn.ReLU(),
                                     nn.Linear(6, 3)), L=1, lam_init=1.0)
    set_L(net, {"1": 3, "2.body.1": 5, "3": 2})
    c = latency_counts(net)
    # the shortcut skips the body's QCFS, but the add waits for it: 1 + 3 + 5 + 2
    assert c["total"] == 11 and c["levels"] == [3, 5, 2] and c["fan_ins"] == [5, 6, 6]


def test_latency_counts_without_qcfs_is_an_error():
    with pytest.raises(ValueError, match="no QCFS"):
        latency_counts(nn.Sequential(nn.Linear(3, 2)))


# ---- T to threshold -----------------------------------------------------------------------
def _scan(curve, target):
    """Brute force: every T whose value reaches the target, smallest first."""
    hits = [t for t in range(1, len(curve) + 1) if curve[t - 1] >= target - 1e-9]
    return hits[0] if hits else None


@pytest.mark.parametrize("seed", range(30))
def test_T_to_reach_matches_a_brute_force_scan(seed):
    rng = random.Random(seed)
    n_test = rng.choice([97, 100, 597, 1000])
    T_max = rng.choice([1, 5, 64, 256])
    hits = [rng.randint(0, n_test) for _ in range(T_max)]
    curve = [h / n_test for h in hits]
    ann = rng.randint(0, n_test) / n_test
    for drop in (0.0, 0.001, 0.005, 0.3):
        assert T_to_reach(curve, ann - drop) == _scan(curve, ann - drop)


@pytest.mark.parametrize("n_test,ann_hits", [(1000, 985), (1000, 700), (597, 590), (100, 93)])
def test_T_to_reach_admits_exact_ties(n_test, ann_hits):
    """Accuracy exactly ANN - 0.5 points counts as reached, whatever float rounding of
    ann - 0.005 does (0.985 - 0.005 = 0.9799999999999999 in float)."""
    ann = ann_hits / n_test
    tie = math.ceil(ann_hits - 0.005 * n_test - 1e-9)      # the fewest hits that qualify
    curve = [(tie - 1) / n_test] * 4 + [tie / n_test] * 3
    assert T_to_reach(curve, ann - 0.005) == 5
    below = [(tie - 1) / n_test] * 7
    assert T_to_reach(below, ann - 0.005) is None


def test_naive_thresholds_and_not_by_T():
    acc = [0.5, 0.9, 0.975, 0.979, 0.98, 0.985, 0.98]
    agree = [0.4, 0.8, 0.95, 0.99, 0.995, 0.999, 0.999]
    t = naive_thresholds(acc, agree, ann_acc=0.985)
    assert t == {"acc-0.5": 5, "acc-0.1": 6, "agree-100": None}
    assert fmt_T(t["agree-100"], 7) == "not by T = 7" and fmt_T(5, 7) == "5"
    t = naive_thresholds([1.0], [1.0], ann_acc=1.0)
    assert t == {"acc-0.5": 1, "acc-0.1": 1, "agree-100": 1}


def _case(dataset="mnist-5k", reach=True):
    return {"dataset": dataset, "depth": 7, "setting": "L = 2", "T_max": 4, "ann_acc": 0.9,
            "counts": {"levels": [2, 2], "fan_ins": [9, 18], "sum_L": 4, "max_L": 2,
                       "total": 5, "effective": 3.0},
            "pascal": {"acc": 0.9, "agreement": 1.0, "time_steps": 5, "spikes": 10.0,
                       "sops": 100.0},
            "naive": {"acc_per_T": [0.1, 0.5, 0.9, 0.9], "agree_per_T": [0.1, 0.5, 0.9, 0.95],
                      "thresholds": {"acc-0.5": 3 if reach else None, "acc-0.1": None,
                                     "agree-100": None},
                      "at": ({"acc-0.5": {"T": 3, "acc": 0.9, "spikes": 30.0, "sops": 3e3}}
                             if reach else {})}}


def test_latency_markdown_says_not_by_T_and_names_its_command():
    md = latency_markdown([_case(), _case("mnist1d-static", reach=False)], "membra convert "
                          "latency X.toml")
    assert "`membra convert latency X.toml`" in md
    assert md.count("not by T = 4") == 2 + 3 + 1 + 2   # table 1: 2 + 3, table 2: 1 + 2
    assert "T = 3, 90.00%, 30, 3,000" in md


def test_fan_in_of_a_qcfs_after_an_identity_shortcut_add_is_the_body_conv():
    """``relu(body(x) + x)``: the add's current comes from the body's last Linear (fan-in 6
    here), not from the earlier layer behind the shortcut's QCFS (fan-in 5)."""
    from membra.convert import Residual
    torch.manual_seed(2)
    net = replace_relu(nn.Sequential(nn.Linear(5, 6), nn.ReLU(), Residual(nn.Linear(6, 6)),
                                     nn.ReLU(), nn.Linear(6, 3)), L=2, lam_init=1.0)
    assert latency_counts(net)["fan_ins"] == [5, 6]


def test_a_qcfs_fed_by_the_input_alone_has_no_fan_in():
    from membra.convert import QCFS
    net = nn.Sequential(QCFS(L=2), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="not fed by a Linear/Conv"):
        latency_counts(net)


def test_cached_only_reports_cached_cases_and_trains_nothing(tmp_path):
    """``--cached-only``: the cases already evaluated come back as cached; the others are
    skipped with a line, and no run folder is created."""
    import json

    from membra.experiments.latency import latency_benchmark
    cache = tmp_path / "cache"
    cache.mkdir()
    case = _case("mnist1d-static")
    (cache / "convert_latency_mnist1d_d7_L2.json").write_text(json.dumps(case))
    said = []
    out = latency_benchmark(["configs/convert_latency_mnist1d.toml"], depths=(7,),
                            runs_root=tmp_path / "runs", cache=cache, log=said.append,
                            train=False)
    assert out == [case]
    assert sorted(s.split()[1] for s in said) == ["convert_latency_mnist1d_d7_AL:",
                                                  "convert_latency_mnist1d_d7_L4:"]
    assert not (tmp_path / "runs").exists()


def test_latency_figure_has_one_panel_per_dataset():
    pytest.importorskip("matplotlib")
    from membra.plotting import latency_figure
    fig = latency_figure([_case("mnist-5k"), _case("mnist1d-static"), _case("mnist-5k")])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["mnist-5k", "mnist1d-static"]
    assert len(fig.axes[0].lines) == 2 * 3          # two cases: curve, 1 + ΣL, T_eff each


def _fake_run(d, status):
    """A conversion run folder whose convert.json has a stage ``uniform`` with ``status``."""
    import json

    d.mkdir(parents=True)
    (d / "convert.json").write_text(json.dumps({"net": "vgg_small", "convert": {}, "stages": [
        {"name": "uniform", "L": {"a": 2}, "run_dir": ".", "test_acc": 0.5,
         "status": status}]}))


@pytest.mark.parametrize("layout,want", [
    ({"": "completed"}, ""),                               # finished in place
    ({"": None, "-1": "completed"}, "-1"),                 # fit moved an unfinished run aside
    ({"": None, "-1": None, "-2": "completed"}, "-2"),
    ({"": None, "-10": "completed", "-2": "completed"}, "-2"),     # numeric order
    ({"": None, "-x": "completed", "-1b": "completed"}, None),     # not fit's siblings
    ({"": None, "-1": "interrupted"}, None),               # not finished anywhere
    ({}, None)])
def test_benchmark_finds_the_folder_fit_trained_into(tmp_path, layout, want):
    from membra.experiments.latency_runs import finished_run

    base = tmp_path / "convert_latency_x_d7_L2"
    for suffix, st in layout.items():
        if st is None:
            (tmp_path / f"{base.name}{suffix}" / "checkpoints").mkdir(parents=True)
        else:
            _fake_run(tmp_path / f"{base.name}{suffix}", st)
    got = finished_run(base, {"uniform": "L = 2"})
    assert got == (None if want is None else tmp_path / f"{base.name}{want}")
