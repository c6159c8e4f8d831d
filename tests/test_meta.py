"""Random-effects pooling of runs (ovkit.meta) against hand-computed meta-analysis formulas."""

import math

import numpy as np
import pytest
from scipy import stats

from ovkit import meta


def test_pool_matches_a_hand_computed_example():
    """Three runs whose spread is within their own noise: τ² = 0, the fixed-effect mean, and the
    random-effects interval (t with 2 df; the HKSJ one would be narrower, so it is not used)."""
    y, v = np.array([0.1, 0.3, 0.2]), np.array([0.01, 0.02, 0.015])
    w = 1 / v  # 100, 50, 66.67
    mean = (w * y).sum() / w.sum()  # 0.176923
    q = (w * (y - mean) ** 2).sum()  # 1.3846 < k − 1 = 2 → Paule–Mandel τ² = 0
    assert q < 2 and mean == pytest.approx(0.176923, abs=1e-6)
    half = stats.t.ppf(0.975, 2) * math.sqrt(1 / w.sum())  # 4.3027 × 0.067937
    pooled = meta.pool(y, y - meta.Z95 * np.sqrt(v), y + meta.Z95 * np.sqrt(v))
    assert pooled.tau2 == pytest.approx(0.0, abs=1e-12) and pooled.k == 3
    assert pooled.method == "random-effects"
    assert pooled.estimate == pytest.approx(mean)
    assert (pooled.ci_low, pooled.ci_high) == pytest.approx((-0.115385, 0.469231), abs=1e-5)
    assert pooled.ci_high - pooled.estimate == pytest.approx(half)


def test_pool_with_heterogeneity_solves_the_paule_mandel_equation():
    """Runs that disagree beyond their noise: τ² solves Σ w*(y − μ*)² = k − 1 with w* = 1/(v + τ²), and
    the interval is the Hartung–Knapp one (its variance Σ w*(y − μ*)² / ((k − 1) Σ w*) = 1 / Σ w* here)."""
    y, v = np.array([0.1, 0.5, 0.2, 0.35]), np.array([0.001, 0.002, 0.0015, 0.001])
    pooled = meta.pool(y, y - meta.Z95 * np.sqrt(v), y + meta.Z95 * np.sqrt(v))
    w = 1 / (v + pooled.tau2)
    mu = (w * y).sum() / w.sum()
    assert pooled.tau2 > 0.01 and (w * (y - mu) ** 2).sum() == pytest.approx(len(y) - 1, rel=1e-4)
    assert pooled.estimate == pytest.approx(mu, rel=1e-6)
    half = stats.t.ppf(0.975, len(y) - 1) * math.sqrt(1 / w.sum())
    assert (pooled.ci_low, pooled.ci_high) == pytest.approx((mu - half, mu + half), rel=1e-4)


def test_pooled_interval_is_wider_than_any_run_when_the_seeds_disagree():
    runs = [(0.02, 0.015, 0.025), (-0.01, -0.015, -0.005), (0.03, 0.025, 0.035)]
    pooled = meta.pool(*zip(*runs, strict=True))
    assert pooled.ci_low < 0 < pooled.ci_high  # no run's confident sign survives the disagreement
    assert pooled.ci_high - pooled.ci_low > 10 * 0.01


def test_one_run_keeps_its_interval_and_runs_without_intervals_fall_back_to_t():
    one = meta.pool([0.3], [0.1], [0.5])
    assert (one.estimate, one.ci_low, one.ci_high, one.method) == (0.3, 0.1, 0.5, "one run")
    flat = meta.pool([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])  # zero-width: no usable errors
    low, high = stats.t.interval(0.95, 2, loc=2.0, scale=stats.sem([1.0, 2.0, 3.0]))
    assert flat.method == "t over runs" and (flat.ci_low, flat.ci_high) == pytest.approx((low, high))
    with pytest.raises(ValueError, match="no runs"):
        meta.pool([], [], [])


def test_standard_error_inverts_a_normal_interval():
    assert meta.standard_error(-1.959964, 1.959964) == pytest.approx(1.0, rel=1e-6)
