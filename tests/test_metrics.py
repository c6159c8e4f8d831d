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
