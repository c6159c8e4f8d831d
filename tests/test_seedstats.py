"""Statistics over seeds: t-intervals (scipy), random-effects pooling of the runs' own intervals,
and the seed-level ledger's verdicts."""

import math

import numpy as np
import pytest
from scipy import stats

from ovkit import meta, report, seedstats


def test_t_interval_matches_scipy():
    values = [0.31, 0.27, 0.35, 0.29]
    mean, low, high = seedstats.t_interval(values)
    ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values)) and (low, high) == pytest.approx(ref)
    assert math.isnan(seedstats.t_interval([0.3])[1])


def test_across_seeds_pools_run_intervals_by_random_effects():
    runs = [{"a": 1.0, "a_ci_low": 0.0, "a_ci_high": 9.0, "p": "x", "n": 5.0},
            {"a": 2.0, "a_ci_low": 1.5, "a_ci_high": 2.5, "p": "y", "n": 6.0},
            {"a": 3.0, "a_ci_low": 2.5, "a_ci_high": 3.5, "p": "y", "n": 7.0}]
    combined, per_metric = seedstats.across_seeds(runs)
    pooled = meta.pool([1.0, 2.0, 3.0], [0.0, 1.5, 2.5], [9.0, 2.5, 3.5])
    assert combined["a"] == pooled.estimate and pooled.method == "random-effects"
    assert (combined["a_ci_low"], combined["a_ci_high"]) == (pooled.ci_low, pooled.ci_high)
    assert per_metric["a"]["tau2"] == pooled.tau2 > 0 and per_metric["a"]["method"] == "random-effects"
    assert 2.0 < combined["a"] < 3.0  # the precise runs weigh more than the vague first one
    assert combined["p"] == "y"
    assert per_metric["a"]["min"] == 1.0 and per_metric["a"]["max"] == 3.0 and per_metric["a"]["n"] == 3
    assert combined["n"] == 6.0 and (per_metric["n"]["ci_low"], per_metric["n"]["ci_high"]) == pytest.approx(
        seedstats.t_interval([5.0, 6.0, 7.0])[1:])  # no run interval: a t-interval describes the spread
    assert "tau2" not in per_metric["n"]


def _sft(value, half=0.002):
    key = "04.hr@10_diff.sft_vs_pretrain"
    return {key: value, f"{key}_ci_low": value - half, f"{key}_ci_high": value + half}


@pytest.mark.parametrize("values, half, verdict, alone", [
    ([0.030, 0.032, 0.034], 0.002, report.REPRODUCED, 3),  # every seed and the pooled interval clear MINIMUM
    ([0.030, -0.020, 0.040], 0.002, report.INCONCLUSIVE, 2),  # two seeds reproduce; pooled: 0 included
    ([0.004, 0.005, 0.006], 0.002, report.PARTLY, 0),  # an effect, smaller than the smallest of interest
    ([0.003, -0.004, 0.001], 0.002, report.NOT, 0),
    # the review's case: each seed inconclusive alone (CI [−2%, +3%]); agreeing point estimates must not
    # turn that into an effect — a t-interval over the 3 estimates alone would say "partly"
    ([0.005, 0.005, 0.006], 0.025, report.INCONCLUSIVE, 0),
])
def test_seed_ledger_judges_the_pooled_interval(values, half, verdict, alone):
    table = seedstats.seed_ledger([_sft(v, half) for v in values], seeds_=[4, 5, 6]).set_index("claim")
    row = table.loc["SFT adds personalisation"]
    assert row["verdict"] == verdict and row["reproduced_alone"] == alone and row["n_seeds"] == 3
    pooled = meta.pool(values, [v - half for v in values], [v + half for v in values])
    assert row["mean"] == pytest.approx(pooled.estimate) and row["tau2"] == pytest.approx(pooled.tau2)
    assert row["method"] == "random-effects"
    alone_verdicts = [report.judge_effect(v, v - half, v + half, minimum=report.MINIMUM) for v in values]
    assert row["seed_verdicts"] == dict(zip(["4", "5", "6"], alone_verdicts, strict=True))
    assert table.loc["online: CVR", "verdict"] == report.MISSING


def test_t_over_seed_means_would_have_overstated_the_review_case():
    """The old rule (a t-interval of the seeds' estimates) on the same runs: decisive where none is."""
    _, low, _ = seedstats.t_interval([0.005, 0.005, 0.006])
    assert low > 0


# --- the shared stage cache under concurrent builders --------------------------------------------------
