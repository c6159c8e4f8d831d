"""Ranking metrics against ranx on the same run."""

import numpy as np
import pandas as pd
import pytest
from ranx import Qrels, Run, evaluate

from ovkit import metrics


@pytest.mark.slow
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


@pytest.mark.slow
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


def _sessions(rng, users=300):
    """Users with 1–6 sessions each and a per-user effect shared by their sessions."""
    counts = rng.integers(1, 7, users)
    groups = np.repeat(np.arange(users), counts)
    level = np.repeat(rng.normal(0, 1, users), counts)
    baseline = level + rng.normal(0, 0.5, len(groups)) + 5
    return groups, baseline + 0.2 + rng.normal(0, 0.5, len(groups)), baseline


def test_cluster_estimates_are_the_session_level_statistics():
    groups, values, baseline = _sessions(np.random.default_rng(2))
    est, low, high = metrics.cluster_mean_ci(values, groups)
    assert est == pytest.approx(np.mean(values), rel=1e-12) and low < est < high
    est, low, high = metrics.cluster_mean_ci(values, groups, baseline=baseline)
    assert est == pytest.approx(np.mean(values - baseline), rel=1e-12) and low < est < high
    est, low, high = metrics.cluster_mean_ci(values, groups, baseline=baseline, relative=True)
    assert est == pytest.approx(values.sum() / baseline.sum() - 1, rel=1e-12) and low < est < high


def test_cluster_ci_of_copied_sessions_is_the_ci_of_the_users():
    rng = np.random.default_rng(3)
    users, copies = 40, 5
    per_user = rng.normal(0, 1, users)
    values, groups = np.repeat(per_user, copies), np.repeat(np.arange(users), copies)
    clustered = metrics.cluster_mean_ci(values, groups, resamples=999, seed=7)
    # copies add no information: the same draws of users give the same CI as the users' own values
    assert clustered == pytest.approx(metrics.mean_ci(per_user, resamples=999, seed=7), abs=1e-12)
    _, low, high = metrics.mean_ci(values, resamples=999, seed=7)  # treats the copies as independent
    assert high - low < 0.6 * (clustered[2] - clustered[1])  # ~1/sqrt(5) as wide: overconfident


def test_cluster_statistic_on_an_explicit_resample():
    # users a: values [1, 3] baseline [1, 1]; b: [2] / [2]; c: [0, 0, 6] / [1, 1, 2]
    values, baseline, groups = [1, 3, 2, 0, 0, 6], [1, 1, 2, 1, 1, 2], ["a", "a", "b", "c", "c", "c"]
    units = metrics._cluster_units(values, groups, baseline=baseline)
    assert units.tolist() == [[4, 2, 6], [2, 2, 4], [2, 1, 3]]
    draw = units[:, [0, 0, 2]]  # the resample a, a, c: values 1 3 1 3 0 0 6, baseline 1 1 1 1 1 1 2
    assert metrics._cluster_stat(draw) == pytest.approx((14 - 8) / 7)  # mean difference over 7 sessions
    assert metrics._cluster_stat(draw, relative=True) == pytest.approx(14 / 8 - 1)
    plain = metrics._cluster_units(values, groups)[:, [0, 0, 2]]
    assert metrics._cluster_stat(plain) == pytest.approx(2.0)  # 14 / 7
    draw = units[:, [1, 2, 2]]  # b, c, c: values 2 + 6 + 6, baseline 2 + 4 + 4, 7 sessions
    assert metrics._cluster_stat(draw) == pytest.approx(4 / 7)
    assert metrics._cluster_stat(draw, relative=True) == pytest.approx(0.4)


def test_cluster_ci_matches_the_cluster_robust_delta_method():
    groups, values, _ = _sessions(np.random.default_rng(4), users=1000)
    est, low, high = metrics.cluster_mean_ci(values, groups)
    sums, counts = np.bincount(groups, weights=values), np.bincount(groups)
    se = _delta_se(sums, counts)  # per-user sums over per-user session counts
    assert (low, high) == pytest.approx((est - 1.96 * se, est + 1.96 * se), abs=0.2 * se)


def test_cluster_ci_errors():
    with pytest.raises(ValueError, match="5 values, 4 groups"):
        metrics.cluster_mean_ci(np.ones(5), np.arange(4))
    with pytest.raises(ValueError, match="3 baseline values"):
        metrics.cluster_mean_ci(np.ones(4), np.arange(4), baseline=np.ones(3))
    with pytest.raises(ValueError, match="at least 2 groups, got 1"):
        metrics.cluster_mean_ci(np.ones(4), np.zeros(4))
    with pytest.raises(ValueError, match="at least 2 groups, got 0"):
        metrics.cluster_mean_ci([], [])
    with pytest.raises(ValueError, match="needs a baseline"):
        metrics.cluster_mean_ci(np.ones(4), np.arange(4), relative=True)


def test_reciprocal_ranks_are_the_per_query_terms_of_mrr():
    ranked = np.array([[3, 1, 2], [1, 2, 3], [2, 3, 1], [5, 6, 7]])
    target = np.array([1, 1, 1, 1])
    np.testing.assert_allclose(metrics.reciprocal_ranks(ranked, target, 3), [1 / 2, 1, 1 / 3, 0])
    np.testing.assert_allclose(metrics.reciprocal_ranks(ranked, target, 2), [1 / 2, 1, 0, 0])
    assert metrics.mrr(ranked, target, 3) == pytest.approx((1 / 2 + 1 + 1 / 3) / 4)


def test_slice_table_matches_direct_hit_rates():
    rng = np.random.default_rng(0)
    sessions = {name: pd.DataFrame({"user": rng.integers(0, 8, n), "ordered": rng.integers(0, 20, n),
                                    "intent": rng.integers(0, 20, n)})
                for name, n in (("warm", 60), ("cold", 30))}
    ranked = {name: {"a": rng.integers(0, 20, (len(s), 10)), "b": rng.integers(0, 20, (len(s), 10))}
              for name, s in sessions.items()}
    table = metrics.slice_table(ranked, sessions)
    for (system, name), row in table.iterrows():
        s = sessions[name]
        lists = ranked[name][system]
        assert row["hr@10"] == pytest.approx(metrics.hit_rate(lists, s["ordered"].to_numpy(), 10))
        assert row["recall_exact@10"] == pytest.approx(
            metrics.hit_rate(ranked[name][system], s["intent"].to_numpy(), 10))
        assert row["hr@10 low"] <= row["hr@10"] <= row["hr@10 high"] and row["sessions"] == len(s)
    lone = {"one user": sessions["warm"].assign(user=3)}  # a slice of one user's sessions: no interval
    row = metrics.slice_table({"one user": ranked["warm"]}, lone).loc[("a", "one user")]
    ordered = lone["one user"]["ordered"].to_numpy()
    assert row["hr@10"] == pytest.approx(metrics.hit_rate(ranked["warm"]["a"], ordered, 10))
    assert np.isnan(row["hr@10 low"]) and np.isnan(row["recall_exact@10 high"])


def test_retention_ci_is_the_photo_level_ratio_with_a_sku_bootstrap():
    rng = np.random.default_rng(1)
    skus_in, skus_held = np.repeat(np.arange(200), 3), np.repeat(np.arange(200), 2)
    easy = rng.random(200)  # SKUs differ in difficulty: photos of one SKU succeed together
    indist = {"a": (rng.random(600) < easy[skus_in]).astype(float),
              "b": (rng.random(600) < 0.5 * easy[skus_in]).astype(float)}
    held = {"a": (rng.random(400) < 0.8 * easy[skus_held]).astype(float),
            "b": (rng.random(400) < 0.45 * easy[skus_held]).astype(float)}
    out = metrics.retention_ci(held, skus_held, indist, skus_in)
    for name in ("a", "b"):
        assert out[name][0] == pytest.approx(held[name].mean() / indist[name].mean())
    assert out["a − b"][0] == pytest.approx(out["a"][0] - out["b"][0])
    # oracle: a plain loop bootstrap over SKUs (other random draws, so the ends agree only roughly)
    draws = np.random.default_rng(7)
    ratios = []
    for _ in range(2000):
        pick = draws.integers(0, 200, 200)
        h = np.concatenate([held["a"][skus_held == g] for g in pick])
        i = np.concatenate([indist["a"][skus_in == g] for g in pick])
        ratios.append(h.mean() / i.mean())
    low, high = np.percentile(ratios, [2.5, 97.5])
    assert out["a"][1] == pytest.approx(low, abs=0.03) and out["a"][2] == pytest.approx(high, abs=0.03)


def test_paired_table_holds_each_pairs_user_resampled_difference():
    users = np.repeat(np.arange(6), 2)
    hits = {"a": np.array([1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1.0]),
            "b": np.array([0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1.0])}
    table = metrics.paired_table(hits, users, {"a − b": ("a", "b"), "b − a": ("b", "a")}, name="HR diff")
    assert list(table.columns) == ["HR diff", "95% low", "95% high"]
    assert table.loc["a − b", "HR diff"] == pytest.approx(4 / 12)  # by hand: 8 hits − 4 hits over 12 sessions
    assert tuple(table.loc["a − b"]) == metrics.cluster_mean_ci(hits["a"], users, hits["b"])
    assert table.loc["b − a", "HR diff"] == pytest.approx(-4 / 12)
    relative = metrics.paired_table(hits, users, {"a vs b": ("a", "b")}, relative=True)
    assert relative.iloc[0, 0] == pytest.approx(8 / 4 - 1)  # Σa / Σb − 1
