"""Timing: speed-ups (total-time and median per-query ratios) with bootstrap CIs over queries and
rounds; systems are timed interleaved, in rounds, in varying order, each the expected number of times."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ovkit import timing


def recorder(names, calls):
    """Fake systems that take no time and append (name, argument) to ``calls``."""
    return {name: (lambda arg, name=name: calls.append((name, arg))) for name in names}


def test_speedup_is_the_median_of_per_query_ratios_with_a_ci_that_narrows():
    times = pd.DataFrame({"base": [2.0, 4.0, 6.0, 8.0, 10.0], "fast": [1.0, 1.0, 2.0, 2.0, 5.0]})
    ratio, low, high = timing.speedup_ci(times, "base", "fast")  # ratios 2, 4, 3, 4, 2
    assert ratio == 3.0 and low <= ratio <= high
    assert timing.speedup_ci(times, "fast", "base")[0] == pytest.approx(1 / 3)

    def width(n):
        rng = np.random.default_rng(n)
        base = rng.lognormal(1.0, 0.3, n)
        noisy = pd.DataFrame({"base": base, "other": base / (1.5 * rng.lognormal(0.0, 0.3, n))})
        ratio, low, high = timing.speedup_ci(noisy, "base", "other")
        assert low <= ratio <= high and low < 1.5 < high
        return high - low

    assert width(2000) < width(50) / 3  # ~ 1/√n
    ratio, low, high = timing.speedup_ci(times.head(1), "base", "fast")
    assert ratio == 2.0 and np.isnan(low) and np.isnan(high)  # one query: no interval


def test_interleaved_runs_every_system_on_every_query_in_rounds_in_varying_order():
    calls = []
    names = ["a", "b", "c"]
    frame = timing.interleaved(recorder(names, calls), n=8, repeats=2, warmup=3, progress=False)
    assert list(frame.columns) == names and frame.shape == (8, 3) and (frame >= 0).all().all()
    assert frame.attrs["rounds"].shape == (2, 8, 3)
    np.testing.assert_array_equal(frame.to_numpy(), np.median(frame.attrs["rounds"], 0))
    warm = [(name, i) for name in names for i in range(3)]
    assert calls[:9] == warm  # each system warmed up on its first queries, untimed
    timed = calls[9:]
    assert len(timed) == 8 * 3 * 2
    for name in names:  # round 1 over every query, then round 2
        assert [i for n, i in timed if n == name] == list(range(8)) * 2
    assert [i for _, i in timed] == [i for _ in range(2) for i in range(8) for _ in range(3)]
    orders = {tuple(n for n, _ in timed[3 * i: 3 * i + 3]) for i in range(16)}
    assert all(sorted(order) == names for order in orders) and len(orders) > 1
    again = []
    timing.interleaved(recorder(names, again), n=8, repeats=2, warmup=3, progress=False)
    assert again == calls  # the order is seeded
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        timing.interleaved(recorder(names, []), n=8, repeats=0, progress=False)


def with_rounds(rounds: np.ndarray, names) -> pd.DataFrame:
    """A frame as :func:`timing.interleaved` returns it, from (rounds, queries, systems) times."""
    frame = pd.DataFrame(np.median(rounds, 0), columns=names)
    frame.attrs["rounds"] = rounds
    return frame


def test_total_time_ratio_and_median_ratio_differ_when_pruning_helps_some_queries():
    """The issue's fixture: most queries unchanged, a few much faster → median ≈ 1, total ≈ 1.5."""
    base = np.r_[np.full(90, 1.0), np.full(10, 10.0)]
    pruned = np.r_[np.full(90, 1.0) / np.linspace(1.0, 1.02, 90), np.full(10, 10.0 / 2.7)]
    times = pd.DataFrame({"unpruned": base, "pruned": pruned})
    ratios = timing.speedups(times, "unpruned", "pruned")
    assert ratios["total"][0] == pytest.approx(base.sum() / pruned.sum())
    assert ratios["total"][0] == pytest.approx(1.5, abs=0.03) and ratios["median"][0] < 1.02
    assert ratios["total"][1] > 1.2 > ratios["median"][2]  # the intervals do not even overlap
    assert timing.total_speedup_ci(times, "unpruned", "pruned") == ratios["total"]
    assert timing.speedup_ci(times, "unpruned", "pruned") == ratios["median"]


def test_one_round_bootstrap_agrees_with_scipy():
    rng = np.random.default_rng(3)
    base = rng.lognormal(1.0, 0.4, 150)
    times = pd.DataFrame({"base": base, "other": base / (1.3 * rng.lognormal(0.0, 0.3, 150))})
    est, low, high = timing.total_speedup_ci(times, "base", "other", resamples=4000)
    ref = stats.bootstrap((times["base"].to_numpy(), times["other"].to_numpy()),
                          lambda b, o, axis=-1: b.sum(axis) / o.sum(axis), paired=True, vectorized=True,
                          n_resamples=4000, method="percentile", rng=np.random.default_rng(0))
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.015)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.015)


def test_a_slow_round_widens_the_interval():
    """Spread between repeats belongs in the interval: one round where 'other' ran slow."""
    rng = np.random.default_rng(5)
    base = rng.lognormal(1.0, 0.2, (3, 100))
    steady = base / 1.3
    drifting = steady.copy()
    drifting[2] *= 1.6  # the third round ran 1.6× slower for 'other' only
    calm = timing.total_speedup_ci(with_rounds(np.stack([base, steady], -1), ["b", "o"]), "b", "o")
    noisy = timing.total_speedup_ci(with_rounds(np.stack([base, drifting], -1), ["b", "o"]), "b", "o")
    assert calm[2] - calm[1] < (noisy[2] - noisy[1]) / 3
    assert calm[1] < 1.3 < calm[2]
    assert noisy[1] < noisy[0] < noisy[2]


def test_batched_runs_every_system_over_the_queries_in_batches():
    calls = []
    series = timing.batched(recorder(["x", "y"], calls), n=10, batch=4, repeats=3)
    assert list(series.index) == ["x", "y"] and (series >= 0).all()
    parts = [slice(0, 4), slice(4, 8), slice(8, 10)]
    for name in ("x", "y"):
        assert [s for n, s in calls if n == name] == [parts[0]] + parts * 3  # one warm-up batch


def test_no_systems_is_an_error():
    with pytest.raises(ValueError, match="no systems"):
        timing.interleaved({}, 5)
    with pytest.raises(ValueError, match="no systems"):
        timing.batched({}, 5, 2)
    with pytest.raises(ValueError, match="no queries"):
        timing.batched({"x": print}, 0, 2)


def test_rows_turns_an_index_into_a_batch_of_one():
    assert timing.rows(3) == slice(3, 4) and timing.rows(np.int64(0)) == slice(0, 1)
    assert timing.rows(slice(2, 9)) == slice(2, 9)
