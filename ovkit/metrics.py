"""Offline ranking metrics with one relevant item per query (notebooks 03–06).

``ranked`` is (Q, K) SKU ids, best first (-1 pads short lists); ``target`` is (Q,) the relevant SKU.
Checked against ``ranx`` in the tests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _rank_of_target(ranked: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """0-based rank of the target within the top ``k`` (``k`` when absent)."""
    hits = np.asarray(ranked)[:, :k] == np.asarray(target)[:, None]
    return np.where(hits.any(1), hits.argmax(1), k)


def hit_rate(ranked, target, k: int) -> float:
    """Share of queries whose target is in the top ``k``."""
    return float((_rank_of_target(ranked, target, k) < k).mean())


def mrr(ranked, target, k: int) -> float:
    """Mean reciprocal rank of the target, 0 beyond the top ``k``."""
    return float(reciprocal_ranks(ranked, target, k).mean())


def ndcg(ranked, target, k: int) -> float:
    """NDCG@k with one relevant item: 1 / log2(rank + 2) (the ideal DCG is 1)."""
    rank = _rank_of_target(ranked, target, k)
    return float(np.where(rank < k, 1 / np.log2(rank + 2), 0.0).mean())


def ranking_report(ranked, target, ks=(1, 5, 10)) -> dict:
    """HR@k for each k, MRR@10 and NDCG@10."""
    if len(np.asarray(target)) == 0:
        raise ValueError("no queries to evaluate")
    out = {f"hr@{k}": hit_rate(ranked, target, k) for k in ks}
    out["mrr@10"] = mrr(ranked, target, 10)
    out["ndcg@10"] = ndcg(ranked, target, 10)
    return out


def reciprocal_ranks(ranked, target, k: int) -> np.ndarray:
    """Per query: 1 / (rank of the target + 1) within the top ``k``, else 0 (the terms of MRR@k)."""
    rank = _rank_of_target(ranked, target, k)
    return np.where(rank < k, 1 / (rank + 1), 0.0)


def hits(ranked, target, k: int) -> np.ndarray:
    """Per query: 1.0 if the target is in the top ``k`` (for confidence intervals)."""
    return (_rank_of_target(ranked, target, k) < k).astype(float)


def mean_ci(values, baseline=None, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple:
    """Mean of per-query ``values`` (or of ``values − baseline``, paired by query) with a percentile
    bootstrap confidence interval (scipy.stats.bootstrap). Returns (estimate, low, high)."""
    from scipy.stats import bootstrap

    data = (np.asarray(values, float),) if baseline is None else (np.asarray(values, float),
                                                                 np.asarray(baseline, float))
    stat = (lambda a, axis: a.mean(axis)) if baseline is None else (lambda a, b, axis: (a - b).mean(axis))
    ci = bootstrap(data, stat, paired=baseline is not None, confidence_level=level, n_resamples=resamples,
                   method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return float(stat(*data, axis=-1)), float(ci.low), float(ci.high)


def _ratio(units, axis=-1):
    """Σ numerator / Σ denominator of per-unit rows (2, …, n) along ``axis``."""
    return units[0].sum(axis) / units[1].sum(axis)


def ratio_ci(numerator, denominator, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple:
    """A ratio metric Σ numerator / Σ denominator (e.g. clicks / exposures) with a percentile
    bootstrap CI that resamples whole units (users): their sessions are not independent.
    Returns (estimate, low, high)."""
    from scipy.stats import bootstrap

    units = np.stack([np.asarray(numerator, float), np.asarray(denominator, float)])
    ci = bootstrap((units,), _ratio, axis=-1, confidence_level=level, n_resamples=resamples,
                   method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return float(_ratio(units)), float(ci.low), float(ci.high)


def lift_ci(control: tuple, treatment: tuple, paired: bool, level: float = 0.95, resamples: int = 2000,
            seed: int = 0) -> tuple:
    """Relative lift of a ratio metric, treatment over control: ratio_T / ratio_C − 1.

    ``control`` and ``treatment`` are (numerator, denominator) arrays per unit (user). ``paired``:
    the same units saw both arms (unit i of one arm is unit i of the other; resampled together);
    otherwise the arms' units are resampled independently. Percentile bootstrap; returns
    (estimate, low, high).
    """
    from scipy.stats import bootstrap

    c = np.stack([np.asarray(a, float) for a in control])
    t = np.stack([np.asarray(a, float) for a in treatment])
    if paired and c.shape != t.shape:
        raise ValueError(f"a paired lift needs the same units in both arms, got {c.shape[1]} and "
                         f"{t.shape[1]}")

    def lift(c, t, axis=-1):
        with np.errstate(divide="ignore", invalid="ignore"):  # a resample with no control events: ±inf
            return _ratio(t, axis) / _ratio(c, axis) - 1

    ci = bootstrap((c, t), lift, paired=paired, axis=-1, confidence_level=level, n_resamples=resamples,
                   method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return float(lift(c, t)), float(ci.low), float(ci.high)


def _cluster_units(values, groups, baseline=None) -> np.ndarray:
    """Per-group rows (3, G): Σ values, Σ baseline (0 without one) and the session count."""
    values = np.asarray(values, float)
    groups = np.asarray(groups)
    b = np.zeros_like(values) if baseline is None else np.asarray(baseline, float)
    if not len(values) == len(groups) == len(b):
        lengths = f"{len(values)} values, {len(groups)} groups" + ("" if baseline is None else
                                                                   f", {len(b)} baseline values")
        raise ValueError(f"one group per session needed, got {lengths}")
    _, index = np.unique(groups, return_inverse=True)
    n_groups = int(index.max()) + 1 if len(index) else 0
    if n_groups < 2:
        raise ValueError(f"a cluster bootstrap needs at least 2 groups, got {n_groups}")
    return np.stack([np.bincount(index, weights=w, minlength=n_groups) for w in (values, b, np.ones_like(b))])


def _cluster_stat(units, relative: bool = False, axis=-1):
    """The session-level statistic from per-group sums: (Σv − Σb) / Σn, or Σv / Σb − 1 if ``relative``."""
    v, b, n = (units[i].sum(axis) for i in range(3))
    with np.errstate(divide="ignore", invalid="ignore"):  # a resample with Σb = 0: ±inf
        return v / b - 1 if relative else (v - b) / n


def cluster_mean_ci(values, groups, baseline=None, relative: bool = False, level: float = 0.95,
                    resamples: int = 2000, seed: int = 0) -> tuple:
    """Mean of per-session ``values`` (or of ``values − baseline``; with ``relative``,
    Σvalues / Σbaseline − 1) with a percentile bootstrap CI that resamples whole groups.

    Sessions of one user are not independent, so the bootstrap draws users (``groups``, one label
    per session) with replacement and keeps all their sessions.

    Returns:
        (estimate, low, high); the estimate is the plain session-level statistic.
    """
    from scipy.stats import bootstrap

    if relative and baseline is None:
        raise ValueError("a relative difference needs a baseline")
    units = _cluster_units(values, groups, baseline)
    stat = lambda u, axis=-1: _cluster_stat(u, relative, axis)
    ci = bootstrap((units,), stat, axis=-1, confidence_level=level, n_resamples=resamples,
                   method="percentile", rng=np.random.default_rng(seed)).confidence_interval
    return float(stat(units)), float(ci.low), float(ci.high)


def paired_table(values: dict, groups, pairs: dict, relative: bool = False,
                 name: str = "difference") -> pd.DataFrame:
    """Paired differences ``values[a] − values[b]`` (or relative ones) with user-resampled 95% CIs.

    Args:
        values: per-session values (e.g. hits) of each system, aligned with ``groups``.
        groups: one label per session (the user): the unit :func:`cluster_mean_ci` resamples.
        pairs: row label → (system a, system b).
    Returns:
        One row per pair: ``name``, ``95% low``, ``95% high``.
    """
    return pd.DataFrame({label: cluster_mean_ci(values[a], groups, values[b], relative=relative)
                         for label, (a, b) in pairs.items()}, index=[name, "95% low", "95% high"]).T


def slice_table(ranked: dict, sessions: dict, k: int = 10) -> pd.DataFrame:
    """HR@k (ordered SKU) and exact-SKU recall@k, with user-resampled 95% intervals, per system
    and session slice (e.g. warm and cold).

    Args:
        ranked: slice → system → ranked lists (S, ≥k) of that slice's sessions, in session order.
        sessions: slice → its sessions (columns user, ordered, intent).
    Returns:
        One row per (system, slice): ``hr@k``, ``recall_exact@k`` and their ``… low`` / ``… high``
        (NaN for a slice whose sessions are one user's).
    """
    rows = {}
    for name, systems in ranked.items():
        frame = sessions[name]
        for system, lists in systems.items():
            row = {"sessions": len(frame)}
            users = frame["user"].to_numpy()
            for key, target in ((f"hr@{k}", "ordered"), (f"recall_exact@{k}", "intent")):
                hit = hits(lists, frame[target].to_numpy(), k)
                if len(np.unique(users)) < 2:  # no interval from a single user's sessions
                    estimate, low, high = float(hit.mean()), np.nan, np.nan
                else:
                    estimate, low, high = cluster_mean_ci(hit, users)
                row.update({key: estimate, f"{key} low": low, f"{key} high": high})
            rows[(system, name)] = row
    table = pd.DataFrame(rows).T.rename_axis(["system", "slice"])
    return table.astype({"sessions": int})


def retention_ci(heldout: dict, heldout_groups, indist: dict, indist_groups, level: float = 0.95,
                 resamples: int = 2000, seed: int = 0) -> dict:
    """How much recall survives changed conditions: R(held-out photos) / R(in-distribution photos),
    per system, with a percentile bootstrap that resamples groups (SKUs) — one draw serves both
    photo sets and every system, so differences between systems are paired.

    Args:
        heldout, indist: system → per-photo hits (0/1) on each photo set.
        heldout_groups, indist_groups: the group (SKU) of each photo of each set.
    Returns:
        system → (ratio, low, high), plus ``"<a> − <b>"`` → (difference, low, high) for the
        first two systems.
    """
    groups, held_idx = np.unique(np.concatenate([heldout_groups, indist_groups]), return_inverse=True)
    held_idx, ind_idx = held_idx[: len(heldout_groups)], held_idx[len(heldout_groups):]

    def per_group(values, idx):
        return np.bincount(idx, weights=np.asarray(values, float), minlength=len(groups))

    counts = np.random.default_rng(seed).multinomial(len(groups), np.full(len(groups), 1 / len(groups)),
                                                     size=resamples)
    weights = np.vstack([np.ones(len(groups)), counts])  # row 0: the sample itself
    n_held, n_ind = weights @ per_group(np.ones(len(held_idx)), held_idx), weights @ per_group(
        np.ones(len(ind_idx)), ind_idx)
    ratios = {name: (weights @ per_group(heldout[name], held_idx) / n_held)
              / (weights @ per_group(indist[name], ind_idx) / n_ind) for name in heldout}
    names = list(ratios)
    if len(names) >= 2:
        ratios[f"{names[0]} − {names[1]}"] = ratios[names[0]] - ratios[names[1]]
    tail = (1 - level) / 2 * 100
    return {name: (float(r[0]), *map(float, np.nanpercentile(r[1:], [tail, 100 - tail])))
            for name, r in ratios.items()}


def slice_ci(table: pd.DataFrame, system: str, name: str, key: str) -> tuple:
    """(estimate, low, high) of ``key`` for one system and slice of a :func:`slice_table`."""
    row = table.loc[(system, name)]
    return float(row[key]), float(row[f"{key} low"]), float(row[f"{key} high"])
