"""Ranking metrics against ranx on the same run."""

import numpy as np
import pytest
from ranx import Qrels, Run, evaluate

from ovkit import metrics


def test_metrics_match_ranx():
    rng = np.random.default_rng(0)
    ranked = np.stack([rng.permutation(50)[:10] for _ in range(200)])
    target = np.where(rng.random(200) < 0.7, ranked[np.arange(200), rng.integers(0, 10, 200)], 99)
    qrels = Qrels({f"q{i}": {f"d{t}": 1} for i, t in enumerate(target)})
    run = Run({f"q{i}": {f"d{d}": float(10 - r) for r, d in enumerate(row)} for i, row in enumerate(ranked)})
    theirs = evaluate(qrels, run, ["hit_rate@1", "hit_rate@5", "hit_rate@10", "mrr@10", "ndcg@10"])
    ours = metrics.ranking_report(ranked, target)
    for ours_key, their_key in (("hr@1", "hit_rate@1"), ("hr@5", "hit_rate@5"), ("hr@10", "hit_rate@10"),
                                ("mrr@10", "mrr@10"), ("ndcg@10", "ndcg@10")):
        assert ours[ours_key] == pytest.approx(theirs[their_key], abs=1e-9), ours_key


def test_padding_and_empty_input():
    assert metrics.hit_rate(np.array([[3, -1, -1]]), np.array([-2]), 3) == 0.0
    assert metrics.mrr(np.array([[3, 4, 5]]), np.array([5]), 3) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no queries"):
        metrics.ranking_report(np.zeros((0, 10), int), np.zeros(0, int))


def test_confidence_intervals_cover_the_mean_and_shrink_with_data():
    rng = np.random.default_rng(0)
    small, large = rng.random(100) < 0.3, rng.random(10_000) < 0.3
    est, low, high = metrics.mean_ci(small)
    assert low < est < high and est == pytest.approx(small.mean())
    _, low_l, high_l = metrics.mean_ci(large)
    assert high_l - low_l < (high - low) / 5  # ~1/sqrt(100) narrower
    se = np.sqrt(0.3 * 0.7 / 10_000)  # normal approximation as the oracle
    assert low_l == pytest.approx(large.mean() - 1.96 * se, abs=0.003)
    same = metrics.mean_ci(large, baseline=large)  # paired difference of a system with itself
    assert same == (0.0, 0.0, 0.0)
    assert metrics.hits(np.array([[1, 2], [3, 4]]), np.array([2, 5]), 2).tolist() == [1.0, 0.0]


def _delta_se(num, den):
    """Delta-method standard error of Σnum/Σden over independent units (the oracle)."""
    n, ratio = len(num), num.sum() / den.sum()
    return np.sqrt(np.var(num - ratio * den, ddof=1) / n) / den.mean()


def test_ratio_and_lift_intervals_match_the_delta_method():
    rng = np.random.default_rng(1)
    n = 4000
    exposures = rng.integers(5, 40, size=(2, n)).astype(float)  # per user, two independent arms
    clicks = rng.binomial(exposures.astype(int), [[0.05], [0.06]]).astype(float)
    est, low, high = metrics.ratio_ci(clicks[0], exposures[0])
    se = _delta_se(clicks[0], exposures[0])
    assert est == pytest.approx(clicks[0].sum() / exposures[0].sum())
    assert (low, high) == pytest.approx((est - 1.96 * se, est + 1.96 * se), abs=0.3 * se)
    lift, low, high = metrics.lift_ci((clicks[0], exposures[0]), (clicks[1], exposures[1]), paired=False)
    r_c, r_t = clicks[0].sum() / exposures[0].sum(), clicks[1].sum() / exposures[1].sum()
    assert lift == pytest.approx(r_t / r_c - 1)
    # delta method for a ratio of independent ratios: se(log lift)² = (se_t/r_t)² + (se_c/r_c)²
    se_log = np.hypot(_delta_se(clicks[1], exposures[1]) / r_t, se / r_c)
    expected = (r_t / r_c * np.exp(-1.96 * se_log) - 1, r_t / r_c * np.exp(1.96 * se_log) - 1)
    assert (low, high) == pytest.approx(expected, abs=0.012)
    assert low > 0  # a true +20% lift on 4,000 users per arm is found
    # pairing: the same users in both arms with correlated outcomes narrows the interval
    shared = rng.binomial(exposures[0].astype(int), 0.05).astype(float)
    more = shared + (rng.random(n) < 0.2)
    paired = metrics.lift_ci((shared, exposures[0]), (more, exposures[0]), paired=True)
    unpaired = metrics.lift_ci((shared, exposures[0]), (more, exposures[0]), paired=False)
    assert paired[2] - paired[1] < (unpaired[2] - unpaired[1]) / 2
    with pytest.raises(ValueError, match="same units"):
        metrics.lift_ci((clicks[0], exposures[0]), (clicks[1][:10], exposures[1][:10]), paired=True)
