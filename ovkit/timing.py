"""Latency of competing systems measured fairly: in one loop, interleaved, with a bootstrap CI.

Timing one system after another lets a drift of the machine's speed (other jobs, thermal limits,
frequency scaling) land on one of them only. Here every query runs under every system in a fresh
random order, so drift hits all systems alike. The loop runs in several *rounds* (each query once
per system per round), so a slow spell of the machine lands in one round and shows as spread
between rounds. Two speed-ups come with bootstrap intervals that resample queries *and* rounds:
the **total-time ratio** (Σ base / Σ other over the timed queries: throughput, what "x% more
efficient" means) and the median per-query ratio (the typical query). Thread counts are the
caller's business (wrap the calls in :func:`ovkit.config.threads` for batch-1 latency).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

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
        repeats: rounds over the n queries; in each, every query runs once under every system.
        warmup: each system first answers its first ``warmup`` queries untimed (allocator, caches).
        seed: seeds the systems' order, a fresh permutation per query and round.
        progress: show a progress bar.
    Returns:
        (n, systems) milliseconds, the median over rounds, one column per system in the order given;
        ``.attrs["rounds"]`` holds every round's times, (repeats, n, systems), for :func:`speedups`.
    """
    names = _check(systems)
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for name in names:
        for i in range(min(warmup, n)):
            systems[name](i)
    rng = np.random.default_rng(seed)
    rounds = np.zeros((repeats, n, len(names)))
    steps = config.progress(total=repeats * n, enabled=progress, desc="latency", unit="query")
    for r in range(repeats):
        for i in range(n):
            for s in rng.permutation(len(names)):  # a drift of the machine's speed hits every system alike
                rounds[r, i, s] = _ms(systems[names[s]], i)
            steps.update()
    steps.close()
    times = pd.DataFrame(np.median(rounds, 0), columns=names)
    times.attrs["rounds"] = rounds
    return times


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


def _rounds(times: pd.DataFrame, column: str) -> np.ndarray:
    """(rounds, queries) milliseconds of one system: every round if :func:`interleaved` kept them."""
    rounds = times.attrs.get("rounds")
    if rounds is None or rounds.shape[1:] != times.shape:  # a frame without rounds: one round
        return times[column].to_numpy(float)[None]
    return rounds[:, :, list(times.columns).index(column)]


def speedups(times: pd.DataFrame, base: str, other: str, level: float = 0.95, resamples: int = 2000,
             seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """How many times faster ``other`` is than ``base``: total time and the typical query.

    ``total``: Σ base ms / Σ other ms over the timed queries (per-query times are medians over
    rounds) — the throughput ratio a claim like "+21% efficiency" means. ``median``: the median over
    queries of base_ms / other_ms. Each comes with a percentile bootstrap interval that resamples the
    queries *and* the rounds (a two-stage bootstrap: a round that ran slow for one system widens the
    interval instead of hiding in a median). scipy's bootstrap resamples one axis only, hence by hand;
    with one round it is the ordinary query bootstrap (tested against scipy's).

    Args:
        times: :func:`interleaved`'s frame (its ``attrs["rounds"]``; without them one round).
        base, other: two columns of ``times``.
    Returns:
        ``{"total": (ratio, low, high), "median": (ratio, low, high)}`` (> 1: ``other`` is faster);
        NaN ends with fewer than two queries.
    """
    b, o = _rounds(times, base), _rounds(times, other)
    point = {"total": float(np.median(b, 0).sum() / np.median(o, 0).sum()),
             "median": float(np.median(np.median(b, 0) / np.median(o, 0)))}
    n_rounds, n = b.shape
    if n < 2:
        return {k: (v, math.nan, math.nan) for k, v in point.items()}
    rng = np.random.default_rng(seed)
    out = {k: [] for k in point}
    for start in range(0, resamples, 250):  # blocks keep memory at 250 × rounds × queries
        size = min(250, resamples - start)
        qs = rng.integers(0, n, (size, 1, n))
        rs = rng.integers(0, n_rounds, (size, n_rounds, 1))
        tb, to = np.median(b[rs, qs], 1), np.median(o[rs, qs], 1)  # (size, n): per-query medians
        out["total"].append(tb.sum(1) / to.sum(1))
        out["median"].append(np.median(tb / to, 1))
    tail = (1 - level) / 2 * 100
    return {k: (point[k], *map(float, np.percentile(np.concatenate(out[k]), [tail, 100 - tail])))
            for k in point}


def speedup_ci(times: pd.DataFrame, base: str, other: str, level: float = 0.95, resamples: int = 2000,
               seed: int = 0) -> tuple[float, float, float]:
    """The median per-query ratio base_ms / other_ms with its interval (see :func:`speedups`)."""
    return speedups(times, base, other, level, resamples, seed)["median"]


def total_speedup_ci(times: pd.DataFrame, base: str, other: str, level: float = 0.95, resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """The total-time ratio Σ base_ms / Σ other_ms with its interval (see :func:`speedups`)."""
    return speedups(times, base, other, level, resamples, seed)["total"]
