"""Sweep statistics: percentile bootstrap CIs and the recovered fraction (per draw and in
aggregate), checked against scipy, a coverage experiment and exact enumeration."""

import numpy as np
import pytest

from membra.control.stats import (
    bootstrap_ci,
    draw_table,
    episode_recovered,
    min_loss,
    recovered_ci,
    recovered_fraction,
)


@pytest.mark.parametrize("n,seed", [(7, 0), (12, 1), (31, 2), (100, 3)])
def test_bootstrap_ci_agrees_with_scipy_percentile(n, seed):
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(seed).normal(3.0, 2.0, n)
    lo, hi = bootstrap_ci(x, n_boot=20_000)
    ref = scipy_stats.bootstrap((x,), np.mean, method="percentile", n_resamples=20_000,
                                confidence_level=0.95, random_state=seed + 100).confidence_interval
    width = ref.high - ref.low
    assert abs(lo - ref.low) < 0.06 * width and abs(hi - ref.high) < 0.06 * width
    assert lo < x.mean() < hi


def test_bootstrap_ci_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(7)
    hits = 0
    trials = 300
    for t in range(trials):
        x = rng.normal(1.5, 1.0, 40)
        lo, hi = bootstrap_ci(x, n_boot=1000, seed=t)
        hits += lo <= 1.5 <= hi
    assert 0.88 <= hits / trials <= 0.99, hits / trials


@pytest.mark.parametrize("x", [[5.0], [2.0, 2.0, 2.0], [-1.5] * 12])
def test_bootstrap_ci_degenerate_samples(x):
    assert bootstrap_ci(x) == (x[0], x[0])


def test_bootstrap_ci_is_seeded_and_validates():
    x = np.arange(13.0)
    assert bootstrap_ci(x, seed=4) == bootstrap_ci(x, seed=4)
    assert bootstrap_ci(x, seed=4) != bootstrap_ci(x, seed=5)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(x, level=1.0)


def _reference_recovered(off, on, healthy):
    """Exact enumeration of the definition: losing draws only, sum of gains / sum of losses."""
    gain = loss = 0.0
    for a, b in zip(off, on, strict=True):
        if healthy - a > max(0.02 * abs(healthy), 1.0):
            gain += b - a
            loss += healthy - a
    return gain / loss if loss else float("nan")


@pytest.mark.parametrize("seed", range(8))
def test_recovered_fraction_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    healthy = float(rng.uniform(-300, 300))
    k = int(rng.integers(3, 15))
    off = healthy - rng.exponential(100, k) * rng.integers(0, 2, k)  # some draws lose nothing
    on = off + rng.normal(20, 30, k)
    got = recovered_fraction(off, on, healthy)
    ref = _reference_recovered(off, on, healthy)
    assert (np.isnan(got) and np.isnan(ref)) or got == pytest.approx(ref, rel=1e-12)
    rows = draw_table(off, on, healthy)
    assert [r["loses"] for r in rows] == list(healthy - off > min_loss(healthy))
    for r, a, b in zip(rows, off, on, strict=True):
        assert (r["recovered"] is None) == (not r["loses"])
        if r["loses"]:
            assert r["recovered"] == pytest.approx((b - a) / (healthy - a))


def test_a_draw_that_loses_nothing_stays_out_of_the_ratio():
    healthy = -150.0
    off = np.array([-450.0, -350.0, -150.5])  # the last draw loses 0.5 point: no loss
    on = np.array([-300.0, -250.0, +500.0])   # a huge "gain" on it must not count
    assert recovered_fraction(off, on, healthy) == pytest.approx(250 / 500)
    assert np.isnan(recovered_fraction([-150.0, -149.0], [0.0, 0.0], healthy))


def test_recovered_ci_lower_bound_above_zero_only_for_a_real_effect():
    rng = np.random.default_rng(0)
    healthy = -150.0
    off = healthy - rng.uniform(100, 600, 12)
    on_good = off + 0.5 * (healthy - off) + rng.normal(0, 20, 12)
    lo, hi = recovered_ci(off, on_good, healthy)
    assert 0 < lo < 0.5 < hi
    on_null = off + rng.normal(0, 60, 12)
    lo, hi = recovered_ci(off, on_null, healthy)
    assert lo < 0 < hi


def test_episode_recovered_needs_a_mean_loss():
    h = np.array([-100.0, -120.0, -80.0])
    assert episode_recovered(h - 100, h - 50, h) == pytest.approx(0.5)
    assert np.isnan(episode_recovered(h - 0.5, h, h))
