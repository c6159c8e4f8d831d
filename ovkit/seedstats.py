"""Statistics over a sweep's seeds (used by :mod:`ovkit.sweep`, notebook 06 and the seed plots).

Each metric is combined over the seeds' runs: an estimate recorded with its own 95% interval is
pooled by a random-effects meta-analysis (:mod:`ovkit.meta`), any other number is described by its
mean and a t-interval; the claims ledger then judges the pooled values beside each seed's own
verdict. The second half reads a written summary back as tables.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from . import meta, report
from .paths import project_root, runs_dir

BASE_CELL = "base"  # the grid cell of a sweep without a grid
WORLD = "world"  # every source of variation follows the seed (a sweep without ``vary``)


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval of the mean; NaN ends with fewer than two values."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if len(x) else math.nan
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return mean, float(mean - half), float(mean + half)


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _has_interval(key: str, per_seed: list[dict]) -> bool:
    return all(_numeric(m.get(f"{key}_ci_low")) and _numeric(m.get(f"{key}_ci_high")) for m in per_seed
               if key in m)


def across_seeds(per_seed: list[dict]) -> tuple[dict, dict]:
    """Combine the seeds' metrics into one dict the ledger can judge, and per-metric statistics.

    An estimate recorded with its 95% interval (``key_ci_low`` / ``key_ci_high``, the run's own
    bootstrap) is pooled over the seeds by a random-effects meta-analysis (:func:`ovkit.meta.pool`:
    each run's standard error from its interval plus the between-seed variance τ²); the pooled
    estimate and interval replace the key and its companions. Any other number is described by its
    mean, 95% t-interval, min and max over seeds (its combined value is the mean). A text metric (a
    chosen policy) becomes its most common value.

    Returns:
        ``(combined metrics, {key: {n, mean, ci_low, ci_high, min, max[, tau2, method]}})``; for a
        pooled key ``mean`` is the pooled estimate.
    """
    keys = sorted({k for m in per_seed for k in m})
    combined, stats = {}, {}
    for key in keys:
        values = [m[key] for m in per_seed if key in m and m[key] is not None]
        if not values:
            continue
        if all(_numeric(v) for v in values):
            mean, low, high = t_interval(values)
            stats[key] = {"n": len(values), "mean": mean, "ci_low": low, "ci_high": high,
                          "min": float(min(values)), "max": float(max(values))}
            combined[key] = mean
        elif all(isinstance(v, str) for v in values):
            combined[key] = Counter(values).most_common(1)[0][0]
    for key in [k for k in stats if f"{k}_ci_low" in stats and _has_interval(k, per_seed)]:
        runs = [m for m in per_seed if _numeric(m.get(key))]
        pooled = meta.pool([m[key] for m in runs], [m[f"{key}_ci_low"] for m in runs],
                           [m[f"{key}_ci_high"] for m in runs])
        stats[key] |= {"mean": pooled.estimate, "ci_low": pooled.ci_low, "ci_high": pooled.ci_high,
                       "tau2": pooled.tau2, "method": pooled.method}
        combined |= {key: pooled.estimate, f"{key}_ci_low": pooled.ci_low, f"{key}_ci_high": pooled.ci_high}
    return combined, stats


def seed_ledger(per_seed: list[dict], combined: tuple | None = None,
                seeds_: list | None = None) -> pd.DataFrame:
    """Each claim judged on its pooled interval, beside the verdicts of the seeds one by one.

    ``combined``: :func:`across_seeds` of ``per_seed`` when the caller has it already; ``seeds_``:
    the seeds of ``per_seed`` (default 0, 1, …), which label each seed's own verdict.
    """
    combined, stats = combined or across_seeds(per_seed)
    seeds_ = list(seeds_ if seeds_ is not None else range(len(per_seed)))
    table = report.ledger(combined)
    alone = [report.ledger(m)["verdict"] for m in per_seed]
    table["seeds_alone"] = [
        ", ".join(f"{v} {n}" for v, n in Counter(col[i] for col in alone).most_common())
        for i in range(len(table))]
    table["seed_verdicts"] = [{str(s): col[i] for s, col in zip(seeds_, alone, strict=True)}
                              for i in range(len(table))]
    table["reproduced_alone"] = [sum(report.is_reproduced(col[i]) for col in alone)
                                 for i in range(len(table))]
    table["key"] = [c.keys[0] for c in report.CLAIMS]
    for column, default in (("mean", math.nan), ("ci_low", math.nan), ("ci_high", math.nan),
                            ("tau2", math.nan), ("method", "")):
        table[column] = [stats.get(k, {}).get(column, default) for k in table["key"]]
    table["n_seeds"] = len(per_seed)
    return table


def records(stats: dict, table: pd.DataFrame, n: int) -> dict:
    """Flat ``seeds.*`` records: ``seeds.n``, every metric's statistics, every claim's verdict."""
    out = {"seeds.n": n}
    for key, s in stats.items():
        out.update({f"seeds.{key}.{name}": json_number(s[name]) for name in ("mean", "ci_low", "ci_high",
                                                                               "min", "max", "tau2")
                    if name in s})
    for row in table.itertuples():
        out[f"seeds.{row.key}.verdict"] = row.verdict
    return out


def json_number(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def variance_table(summary: dict, cell: str = BASE_CELL) -> pd.DataFrame:
    """Which source of variation moves each claim's effect most: τ² per claim and source.

    From a sweep with ``vary: [data, shoppers, models]``: for each claim's headline effect, the
    between-seed variance τ² of its random-effects pooling within each source's points (the others
    held at the profile's SEED), and the source with the largest τ². Empty without several sources.
    """
    groups = {source: label for label, (c, source) in _groups(summary).items()
              if c == cell and source != WORLD}
    if len(groups) < 2:
        return pd.DataFrame()
    rows = {}
    for claim in report.CLAIMS:
        key = claim.keys[0]
        tau = {source: summary["cells"][label].get("metrics", {}).get(key, {}).get("tau2")
               for source, label in groups.items()}
        row = {f"τ² {source}": (math.nan if v is None else v) for source, v in tau.items()}
        known = {s: v for s, v in tau.items() if v is not None and math.isfinite(v)}
        row["largest"] = max(known, key=known.get) if known and max(known.values()) > 0 else "—"
        rows[claim.topic] = {"key": key, **row}
    return pd.DataFrame(rows).T


def _groups(summary: dict) -> dict:
    return {label: tuple(g) for label, g in summary.get("groups", {}).items()} or {
        label: (label, WORLD) for label in summary["cells"]}


def claim_keys() -> list[str]:
    """The headline metric key of every ledger claim."""
    return [c.keys[0] for c in report.CLAIMS]


def load(sweep: str | Path) -> dict:
    """A sweep's summary: from a folder, a ``summary.json``, or a sweep name under ``runs/``."""
    path = Path(sweep)
    for candidate in (path, path / "summary.json", runs_dir() / str(sweep) / "summary.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    where = runs_dir() / str(sweep)
    with contextlib.suppress(ValueError):  # shown relative to the project (no machine path in outputs)
        where = where.relative_to(project_root())
    raise FileNotFoundError(f"no sweep summary for {sweep} (looked in {where}): run one "
                            "with 'ovkit sweep sweeps/seeds.yaml --profile <profile>' (make seeds)")


def load_sweep(sweep: str, stem: str, profile: str | None = None) -> dict | None:
    """A sweep's summary: ``sweep`` names one under ``runs/``; ``"auto"`` means ``<stem>-<profile>``
    when it exists (None otherwise); ``""`` means none. A named sweep that is missing is an error."""
    from .paths import current_profile

    name = f"{stem}-{profile or current_profile()}" if sweep == "auto" else sweep
    if not name:
        return None
    try:
        return load(name)
    except FileNotFoundError:
        if sweep != "auto":
            raise
        return None


def _cell(summary: dict, cell: str | None) -> dict:
    cells = summary["cells"]
    if cell is None:
        cell = next(iter(cells))
    if cell not in cells:
        raise KeyError(f"no cell {cell!r} in sweep {summary['sweep']}; cells: {', '.join(cells)}")
    return cells[cell]


def ledger_table(summary: dict, cell: str | None = None) -> pd.DataFrame:
    """The seed-level ledger of one grid cell (default: the first), one row per claim: the pooled
    estimate and interval, τ², the verdict on it and each seed's own verdict."""
    rows = _cell(summary, cell).get("ledger", [])
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["across seeds"] = [_mean_interval(r.get("mean"), r.get("ci_low"), r.get("ci_high")) for r in rows]
    table["τ²"] = [f"{r['tau2']:.3g}" if _numeric(r.get("tau2")) else "—" for r in rows]
    if "seed_verdicts" in table:
        table["each seed"] = [", ".join(f"{s}: {v}" for s, v in (r.get("seed_verdicts") or {}).items())
                              for r in rows]
    else:  # a summary written before seeds were named
        table["each seed"] = table["seeds_alone"]
    return table.rename(columns={"verdict": "verdict across seeds"}).set_index(
        "claim")[["paper_value", "key", "across seeds", "τ²", "verdict across seeds", "each seed"]]


def _mean_interval(mean, low, high) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{mean:+.4g} (one seed)"
    return f"{mean:+.4g} [{low:+.4g}, {high:+.4g}]"


def metric_table(summary: dict, cell: str | None = None, keys=None) -> pd.DataFrame:
    """Metrics of one grid cell over seeds: n, mean, 95% interval, min, max, and for estimates pooled
    from the runs' own intervals τ² and the method (default: every metric)."""
    metrics = _cell(summary, cell).get("metrics", {})
    keys = [k for k in (keys or metrics) if k in metrics]
    table = pd.DataFrame([metrics[k] for k in keys], index=pd.Index(keys, name="metric"))
    if "method" in table:
        table["method"] = table["method"].fillna("t over seeds")
    return table.astype({c: float for c in table.columns if c not in ("n", "method")})


def per_seed(summary: dict, key: str) -> pd.DataFrame:
    """One metric's value per point: columns cell (the point's group label), seed, value (the strip
    plot's data)."""
    label = {tuple(g): name for name, g in _groups(summary).items()}
    rows = [{"cell": label.get((p["cell"], p.get("source", WORLD)), p["cell"]), "seed": p["seed"],
             "value": p["metrics"][key]}
            for p in summary["points"].values()
            if p["status"] == "ok" and _numeric(p.get("metrics", {}).get(key))]
    return pd.DataFrame(rows, columns=["cell", "seed", "value"])
