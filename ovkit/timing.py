"""Latency of competing systems measured fairly: in one loop, interleaved, with a bootstrap CI.

Timing one system after another lets a drift of the machine's speed (other jobs, thermal limits,
frequency scaling) land on one of them only. Here every query runs under every system in a fresh
random order, so drift hits all systems alike, and the speed-up is a median of per-query ratios
with a bootstrap confidence interval over queries. Thread counts are the caller's business (wrap
the calls in :func:`ovkit.config.one_torch_thread` for batch-1 latency).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from . import config


def rows(which) -> slice:
    """The queries a system answers: index ``i`` → ``slice(i, i + 1)`` (batch 1); a slice as it is.

    So one ``run(which)`` serves both :func:`interleaved` (indices) and :func:`batched` (slices).
    """
    return which if isinstance(which, slice) else slice(int(which), int(which) + 1)


def _check(systems: dict) -> list[str]:
    if not systems:
        raise ValueError("no systems to time: pass a dict {name: callable}")
    return list(systems)


def _ms(fn, arg) -> float:
    """Milliseconds one call ``fn(arg)`` takes."""
    t0 = time.perf_counter()
    fn(arg)
    return (time.perf_counter() - t0) * 1000


def interleaved(systems: dict[str, Callable[[int], object]], n: int, repeats: int = 3, warmup: int = 10,
                seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Milliseconds per query of every system at batch 1, the systems interleaved query by query.

    Args:
        systems: ``{name: run}``; ``run(i)`` answers query ``i``.
        n: queries 0 … n-1 are timed.
        repeats: runs per query and system, one after another; their median counts.
        warmup: each system first answers its first ``warmup`` queries untimed (allocator, caches).
        seed: seeds the systems' order, a fresh permutation per query.
        progress: show a progress bar.
    Returns:
        (n, systems) milliseconds, one column per system in the order given.
    """
    names = _check(systems)
    for name in names:
        for i in range(min(warmup, n)):
            systems[name](i)
    rng = np.random.default_rng(seed)
    times = np.zeros((n, len(names)))
    for i in config.progress(range(n), progress, desc="latency", unit="query"):
        for s in rng.permutation(len(names)):  # a drift of the machine's speed hits every system alike
            times[i, s] = np.median([_ms(systems[names[s]], i) for _ in range(repeats)])
    return pd.DataFrame(times, columns=names)


def batched(systems: dict[str, Callable[[slice], object]], n: int, batch: int, repeats: int = 3,
            warmup: int = 1, seed: int = 0) -> pd.Series:
    """Milliseconds per query of every system answering the first ``n`` queries in batches.

    Args:
        systems: ``{name: run}``; ``run(rows)`` answers the queries of slice ``rows``.
        n: queries 0 … n-1, in batches of ``batch``.
        batch: queries per call.
        repeats: passes over the n queries, the systems' order shuffled per pass; the median counts.
        warmup: untimed warm-up batches (the first) per system.
        seed: seeds the orders.
    Returns:
        (systems,) milliseconds per query, indexed by name.
    """
    names = _check(systems)
    if n < 1:
        raise ValueError(f"no queries to time in batches (n={n})")
    parts = [slice(start, min(start + batch, n)) for start in range(0, n, batch)]
    for name in names:
        for _ in range(warmup):
            systems[name](parts[0])
    rng = np.random.default_rng(seed)
    passes = np.zeros((repeats, len(names)))
    for r in range(repeats):
        for s in rng.permutation(len(names)):
            passes[r, s] = sum(_ms(systems[names[s]], part) for part in parts) / n
    return pd.Series(np.median(passes, 0), index=names)


def speedup_ci(times: pd.DataFrame, base: str, other: str, level: float = 0.95, resamples: int = 2000,
               seed: int = 0) -> tuple[float, float, float]:
    """How many times faster ``other`` is than ``base``, with a bootstrap CI over queries.

    Args:
        times: (n, systems) milliseconds per query, e.g. from :func:`interleaved`.
        base, other: two columns of ``times``.
        level: confidence level of the interval.
        resamples: bootstrap resamples.
        seed: seeds the resampling.
    Returns:
        (ratio, low, high): the median over queries of base_ms / other_ms (> 1: ``other`` is
        faster) and its percentile-bootstrap interval (NaN with fewer than two queries).
    """
    ratio = (times[base] / times[other]).to_numpy(float)
    median = float(np.median(ratio))
    if len(ratio) < 2:
        return median, float("nan"), float("nan")
    res = stats.bootstrap((ratio,), np.median, n_resamples=resamples, confidence_level=level,
                          method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return median, float(res.confidence_interval.low), float(res.confidence_interval.high)
