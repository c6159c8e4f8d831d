"""Combining runs (seeds) of one effect: a random-effects meta-analysis with each run's own error.

Each run estimates an effect with its own 95% interval (a user- or SKU-cluster bootstrap). Pooling the
runs' point estimates with a t-interval would throw those errors away: three runs that are each
inconclusive could look decisive together just because their point estimates happen to agree. Here
each run contributes its estimate and its standard error (read off its interval); the between-run
variance τ² (Paule–Mandel) adds what varies from seed to seed; the pooled interval uses the
Hartung–Knapp–Sidik–Jonkman t-interval with k − 1 degrees of freedom, never narrower than the plain
random-effects one (the "modified" HKSJ, safe with few runs). The statistics are statsmodels'
``combine_effects``; this module only reads the runs' intervals and picks the interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

Z95 = stats.norm.ppf(0.975)
METHOD = "random-effects"  # Paule–Mandel τ², modified Hartung–Knapp interval


@dataclass(frozen=True)
class Pooled:
    """One effect pooled over k runs."""

    estimate: float
    ci_low: float
    ci_high: float
    tau2: float  # between-run variance of the effect
    k: int  # runs pooled
    method: str  # "random-effects"; "one run" (its own interval); "t over runs" (no run had an interval)


def standard_error(low: float, high: float, level: float = 0.95) -> float:
    """The standard error a symmetric normal ``level`` interval [low, high] implies."""
    return (high - low) / (2 * stats.norm.ppf(0.5 + level / 2))


def pool(estimates, lows, highs, level: float = 0.95) -> Pooled:
    """Random-effects pooling of k runs' estimates with their own intervals.

    Args:
        estimates, lows, highs: each run's estimate and 95% interval (NaN ends: the run has none).
    Returns:
        :class:`Pooled`. With one run: that run's own interval. Without usable intervals (NaN or zero
        width in some run): the Student-t interval of the estimates ("t over runs").
    """
    from statsmodels.stats.meta_analysis import combine_effects

    y = np.asarray(estimates, float)
    se = standard_error(np.asarray(lows, float), np.asarray(highs, float), level)
    k = len(y)
    if k == 0:
        raise ValueError("no runs to pool")
    if k == 1:
        return Pooled(float(y[0]), float(lows[0]), float(highs[0]), 0.0, 1, "one run")
    if not (np.isfinite(se).all() and (se > 0).all()):
        mean, half = float(y.mean()), stats.t.ppf(0.5 + level / 2, k - 1) * y.std(ddof=1) / math.sqrt(k)
        return Pooled(mean, mean - half, mean + half, math.nan, k, "t over runs")
    res = combine_effects(y, se**2, method_re="iterated", use_t=True, alpha=1 - level)
    sd = max(res.sd_eff_w_re, res.sd_eff_w_re_hksj)  # modified HKSJ: never below the plain RE error
    half = stats.t.ppf(0.5 + level / 2, k - 1) * sd
    mean = float(res.mean_effect_re)
    return Pooled(mean, mean - half, mean + half, float(res.tau2), k, METHOD)
