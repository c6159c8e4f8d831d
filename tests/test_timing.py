"""Timing: the speed-up is a median of per-query ratios with a bootstrap CI; systems are timed
interleaved, in varying order, each the expected number of times."""

import numpy as np
import pandas as pd
import pytest

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


def test_interleaved_runs_every_system_on_every_query_in_varying_order():
    calls = []
    names = ["a", "b", "c"]
    frame = timing.interleaved(recorder(names, calls), n=8, repeats=2, warmup=3, progress=False)
    assert list(frame.columns) == names and frame.shape == (8, 3) and (frame >= 0).all().all()
    warm = [(name, i) for name in names for i in range(3)]
    assert calls[:9] == warm  # each system warmed up on its first queries, untimed
    timed = calls[9:]
    assert len(timed) == 8 * 3 * 2
    for name in names:
        assert [i for n, i in timed if n == name] == [i for i in range(8) for _ in range(2)]
    assert timed[::2] == timed[1::2]  # a system's repeats run back to back
    orders = {tuple(n for n, _ in timed[6 * i : 6 * i + 6 : 2]) for i in range(8)}
    assert all(sorted(order) == names for order in orders) and len(orders) > 1
    again = []
    timing.interleaved(recorder(names, again), n=8, repeats=2, warmup=3, progress=False)
    assert again == calls  # the order is seeded


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
