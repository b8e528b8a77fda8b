"""Confidence intervals, paired differences and verdicts for the study's reports, against
scipy's Student t and closed forms."""

import math
import random

import pytest

from membra.experiments.stats import (
    VERDICTS,
    Interval,
    epochs_to_reach,
    paired_difference,
    t_cdf_two_sided,
    t_interval,
    t_quantile,
    verdict,
)

DFS = [1, 2, 3, 4, 5, 6, 7, 9, 10, 13, 17, 30, 101]
LEVELS = [0.6, 0.9, 0.95, 0.975, 0.995]


@pytest.mark.parametrize("df", DFS)
@pytest.mark.parametrize("p", LEVELS)
def test_t_quantile_matches_scipy(df, p):
    st = pytest.importorskip("scipy.stats")
    assert t_quantile(p, df) == pytest.approx(st.t.ppf(p, df), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("p", LEVELS)
def test_t_quantile_closed_forms(p):
    # df = 1 is Cauchy: tan(pi (p - 1/2)); df = 2: (2p - 1) / sqrt(2 p (1 - p))
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)),
                                             rel=1e-9)


@pytest.mark.parametrize("df", DFS)
def test_two_sided_cdf_is_monotone_and_symmetric(df):
    ts = [0, 0.1, 0.5, 1, 2, 3]
    ps = [t_cdf_two_sided(t, df) for t in ts]
    assert ps[0] == 0 and all(a < b for a, b in zip(ps[:-1], ps[1:], strict=True)) and ps[-1] < 1
    assert t_cdf_two_sided(1e6, df) == pytest.approx(1.0)
    assert t_cdf_two_sided(-1.3, df) == t_cdf_two_sided(1.3, df)


@pytest.mark.parametrize("n", [2, 3, 5, 7, 11])
@pytest.mark.parametrize("seed", range(3))
def test_t_interval_matches_the_formula_and_scipy(n, seed):
    rng = random.Random(100 * n + seed)
    v = [rng.gauss(0.8, 0.05) for _ in range(n)]
    iv = t_interval(v)
    mean = sum(v) / n
    s = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    assert iv.mean == pytest.approx(mean) and iv.n == n
    assert iv.half == pytest.approx(t_quantile(0.975, n - 1) * s / math.sqrt(n))
    st = pytest.importorskip("scipy.stats")
    lo, hi = st.t.interval(0.95, n - 1, loc=mean, scale=s / math.sqrt(n))
    assert (iv.lo, iv.hi) == (pytest.approx(lo), pytest.approx(hi))


def test_hand_computed_interval():
    # 0.90, 0.92, 0.94: mean 0.92, s = 0.02, t(0.975, 2) = 4.302653 -> half 0.049683
    iv = t_interval([0.90, 0.92, 0.94])
    assert iv.half == pytest.approx(4.302653 * 0.02 / math.sqrt(3), rel=1e-6)
    assert iv.fmt() == "92.0 ± 5.0" and iv.fmt_ci() == "[+87.0, +97.0]"


@pytest.mark.parametrize("values", [[0.5], [0.97], [-0.03]])
def test_one_seed_has_no_interval_and_says_n1(values):
    iv = t_interval(values)
    assert iv.lo is None and iv.half is None and iv.n == 1
    assert iv.fmt().endswith("(n=1)") and "±" not in iv.fmt()
    assert "n=1" in iv.fmt_ci()
    assert verdict(iv, +1) == verdict(iv, -1) == VERDICTS[2]


def test_equal_values_give_a_zero_width_interval():
    iv = t_interval([0.7] * 4)
    assert iv.lo == iv.hi == pytest.approx(0.7) and iv.fmt() == "70.0 ± 0.0"


@pytest.mark.parametrize("bad", [[], [0.1, float("nan")], [float("inf"), 0.2]])
def test_bad_values_are_refused(bad):
    with pytest.raises(ValueError, match="no values|finite"):
        t_interval(bad)


@pytest.mark.parametrize("bad", [(0.5, 3), (1.0, 3), (0.2, 3), (0.9, 0), (0.9, 2.5)])
def test_bad_quantile_arguments(bad):
    with pytest.raises(ValueError):
        t_quantile(*bad)


def test_paired_difference_uses_common_seeds_only():
    a = {0: 0.9, 1: 0.8, 2: 0.7, 7: 0.1}
    b = {0: 0.85, 1: 0.76, 2: 0.64, 3: 0.5}
    diffs, iv = paired_difference(a, b)
    assert list(diffs) == [0, 1, 2]
    assert [round(d, 10) for d in diffs.values()] == [0.05, 0.04, 0.06]
    assert iv.mean == pytest.approx(0.05) and iv.n == 3
    with pytest.raises(ValueError, match="no seed in common"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_pairing_removes_the_seed_effect():
    # seeds differ a lot, the arm difference is small but constant-ish: only a paired
    # analysis sees it
    base = {s: 0.5 + 0.1 * s for s in range(5)}
    imp = {s: v + 0.02 + 0.001 * (-1) ** s for s, v in base.items()}
    _, iv = paired_difference(imp, base)
    assert verdict(iv, +1) == "supported"
    unpaired = Interval(0.02, t_interval(imp.values()).lo - t_interval(base.values()).hi,
                        t_interval(imp.values()).hi - t_interval(base.values()).lo, 5)
    assert verdict(unpaired, +1) == VERDICTS[2]


@pytest.mark.parametrize("lo,hi,direction,want", [
    (0.01, 0.05, +1, "supported"),
    (-0.05, -0.01, +1, "not supported"),
    (-0.01, 0.05, +1, "not distinguishable at this size"),
    (-0.05, -0.01, -1, "supported"),
    (0.01, 0.05, -1, "not supported"),
    (-0.05, 0.01, -1, "not distinguishable at this size"),
    (0.0, 0.05, +1, "not distinguishable at this size"),     # touching 0 does not exclude it
])
def test_verdict_rule_branches(lo, hi, direction, want):
    assert verdict(Interval((lo + hi) / 2, lo, hi, 5), direction) == want


def test_verdict_rejects_a_bad_direction():
    with pytest.raises(ValueError, match="direction"):
        verdict(Interval(0.1, 0.0, 0.2, 3), 0)


@pytest.mark.parametrize("curve,thr,want", [
    ([0.5, 0.8, 0.9], 0.8, 2),           # exactly equal counts as reached
    ([0.5, 0.8, 0.9], 0.85, 3),
    ([0.9, 0.5, 0.95], 0.9, 1),          # first reach, not a later one
    ([0.5, 0.6], 0.61, None),
    ([], 0.1, None),
])
def test_epochs_to_reach(curve, thr, want):
    assert epochs_to_reach(curve, thr) == want
