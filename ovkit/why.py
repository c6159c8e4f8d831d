"""Why OneVision trails the cascade: cells of a factorial over kit choices (issue 28).

A *cell* is the whole pipeline of notebooks 00-04 with some settings changed — the SID layout
(``VRQ layout``), what the logging policy shows (``SIM exposure``), … — the simulated shoppers
always the same. :func:`score_cell` trains OneVision's three stages on that cell's logs and SIDs,
fits the cascade on the same logs, and scores both on the cell's test sessions with intervals that
resample users: the SFT gain, the DPO gain, OneVision's gap to the reference cascade (chosen on the
validation sessions, as notebook 04 does), HR@10 per target type, and the share of colourway pairs
whose SIDs differ only in the last code.
"""

from __future__ import annotations

import numpy as np

from . import diagnose, meta, metrics, pipeline, vrq
from .seedstats import load_sweep

# Each factor's levels (kit choices): settings overrides merged into the profile's dicts.
FACTORS = {
    "layout": {layout: {"VRQ": {"layout": layout}} for layout in ("vrq", "shape_first", "random")},
    "exposure": {"visual": {"SIM": {"exposure": "visual"}}, "variants": {"SIM": {"exposure": "variants"}}},
}
# The smallest informative version, which notebook 08 scores itself when no sweep has run: the
# exposure factor with today's layout. The other layouts (shape first; random IDs, the control) are in
# the sweep only: the sweep ruled the layout out, and two more cells of OneVision's three training
# stages (~310 s of CPU) would take make reproduce past its time (issue 27).
HERE = {"layout": ("vrq",), "exposure": ("visual", "variants")}
# Paired differences of HR@10 on the same test sessions: name -> (system a, system b), a - b.
CONTRASTS = {"sft_gain": ("sft", "pretrain"), "dpo_gain": ("dpo", "sft"), "gap_vs_mca": ("dpo", "mca")}


def with_settings(params: dict, changes: dict) -> dict:
    """``params`` with each settings dict (``VRQ``, ``SIM``, …) updated by ``changes``' entries."""
    out = dict(params)
    for name, change in changes.items():
        out[name] = {**(out.get(name) or {}), **change}
    return out


def cell_settings(**levels: str) -> dict:
    """The overrides of one cell, e.g. ``cell_settings(layout="shape_first", exposure="variants")``."""
    changes: dict = {}
    for factor, level in levels.items():
        if factor not in FACTORS or level not in FACTORS[factor]:
            known = "; ".join(f"{f}: {', '.join(v)}" for f, v in FACTORS.items())
            raise ValueError(f"unknown factor level {factor}={level!r}; known: {known}")
        for name, change in FACTORS[factor][level].items():
            changes[name] = {**changes.get(name, {}), **change}
    return changes


def score_cell(params: dict, changes: dict, k: int = 10, progress: bool = False) -> dict:
    """Build and score one cell: ``params`` (notebook-style, e.g. a profile) with ``changes``.

    Returns a flat dict: ``hr@k.<system>`` for pretrain / sft / dpo / mca (the reference cascade),
    each :data:`CONTRASTS` entry with ``_ci_low`` / ``_ci_high`` (users resampled),
    ``hr@k.<system>.<target type>`` for dpo and mca, ``colourway_prefix_share`` and
    ``reference_index`` (the cascade's index chosen on validation sessions).
    """
    built = pipeline.load(with_settings(params, changes), upto="sim")
    built.train_stages(progress=progress)
    test = built.logs.test_sessions
    lists = {stage: built.ranked(stage, k=k) for stage in built.stages}
    index, _, _ = built.reference_cascade()  # chosen on the validation sessions
    lists["mca"] = built.cascade_results()[1]["mca" if index == "catalogue" else "mca_fused"]
    hits = {name: metrics.hits(ranked, test["ordered"].to_numpy(), k) for name, ranked in lists.items()}
    row: dict = {f"hr@{k}.{name}": float(h.mean()) for name, h in hits.items()}
    diffs = metrics.paired_table(hits, test["user"].to_numpy(), CONTRASTS)
    for name, (estimate, low, high) in diffs.iterrows():
        row |= {name: estimate, f"{name}_ci_low": low, f"{name}_ci_high": high}
    kinds = diagnose.target_types(built.catalogue, test)
    by_type = diagnose.hr_by_target_type({s: lists[s] for s in ("dpo", "mca")}, test, kinds, k)[f"hr@{k}"]
    for system in ("dpo", "mca"):
        for kind in diagnose.TARGET_TYPES:
            row[f"hr@{k}.{system}.{kind}"] = float(by_type.get((system, kind), np.nan))
    depth = len(built.ids.config.budget) - 1  # every code of the budget but the last
    row["colourway_prefix_share"] = vrq.colourway_prefix_share(built.catalogue, built.ids.codes, depth)
    row["reference_index"] = index
    return row


def pooled(table):
    """Each cell's :data:`CONTRASTS` pooled over its seeds' rows (``table``: one row per cell and seed,
    with the factor columns) by :func:`ovkit.meta.pool` (random effects, each run's own interval)."""
    import pandas as pd

    rows = []
    for levels, runs in table.groupby(list(FACTORS), sort=False):
        row = dict(zip(FACTORS, levels, strict=True)) | {"seeds": len(runs)}
        for name in CONTRASTS:
            p = meta.pool(*(runs[c].to_numpy() for c in (name, f"{name}_ci_low", f"{name}_ci_high")))
            row |= {name: p.estimate, f"{name}_ci_low": p.ci_low, f"{name}_ci_high": p.ci_high}
        rows.append(row)
    return pd.DataFrame(rows)


# The same contrasts as notebook 04 records them: a sweep of notebook 04 over the cells
# (sweeps/why.yaml) gives them per cell and seed, with the user-swap effects beside.
NOTEBOOK_KEYS = {"sft_gain": "04.hr@10_diff.sft_vs_pretrain", "dpo_gain": "04.hr@10_diff.dpo_vs_sft",
                 "gap_vs_mca": "04.hr@10_diff.dpo_vs_mca", "user_swap.dpo": "04.hr@10_user_swap_diff.dpo",
                 "user_swap.mca": "04.hr@10_user_swap_diff.mca"}
# Read by the screens only (the factorial's cells share the world, so this is one number there).
SCREEN_KEYS = {"taste_gain": "04.hr@10_diff.taste_vs_intent_oracle"}
INTERVAL = ("", "_ci_low", "_ci_high")


def cells(levels: dict | None = None) -> list[dict]:
    """Every cell of the factorial (``levels``: factor → its levels, default :data:`FACTORS`'), e.g.
    ``{"layout": "vrq", "exposure": "visual"}``, in grid order."""
    import itertools

    levels = levels or FACTORS
    return [dict(zip(levels, combo, strict=True)) for combo in itertools.product(*levels.values())]


def sweep_cell(cell: dict) -> str:
    """A cell's label in an ``ovkit sweep`` summary (``VRQ.layout=vrq,SIM.exposure=visual``)."""
    from .sweep import _cell_label

    return _cell_label(cell_settings(**cell))


def from_sweep(summary: dict):
    """The factorial from a sweep of notebook 04 over the cells: one row per cell with the seeds that
    finished, each :data:`NOTEBOOK_KEYS` entry pooled over them (random effects, each run's own
    interval: :func:`ovkit.seedstats.across_seeds`) and HR@10 per target type (mean over seeds) for
    OneVision (DPO) and each seed's reference cascade. None when a cell of :data:`HERE` has no
    finished point; other cells (the other layouts) are shown when they have one."""
    import pandas as pd

    rows, here = [], cells(HERE)
    for cell in cells():
        entry = summary.get("cells", {}).get(sweep_cell(cell), {})
        if not entry.get("points"):
            if cell in here:
                return None
            continue
        row = {**cell, "seeds": len(entry["points"])}
        for name in NOTEBOOK_KEYS:
            row |= _interval(entry.get("metrics", {}), name)
        runs = [summary["points"][point]["metrics"] for point in entry["points"]]
        for kind in diagnose.TARGET_TYPES:
            row[f"hr@10.dpo.{kind}"] = _mean([m.get(f"04.hr@10.dpo.{kind}") for m in runs])
            # each seed's own reference cascade, chosen on its validation sessions
            reference = [m.get(f"04.hr@10.{m.get('04.reference_mca', 'mca')}.{kind}") for m in runs]
            row[f"hr@10.mca.{kind}"] = _mean(reference)
        rows.append(row)
    return pd.DataFrame(rows)


def _mean(values) -> float:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else np.nan


def score_here(params: dict, progress: bool = True):
    """The factorial's :data:`HERE` cells in one world (``params``' SEED): :func:`score_cell` for each,
    one row each with its own intervals (users resampled) and ``seeds`` = 1; no user-swap effects (NaN)."""
    import pandas as pd

    from .config import progress as bar

    keep = {*(name + end for name in CONTRASTS for end in INTERVAL),
            *(f"hr@10.{s}.{kind}" for s in ("dpo", "mca") for kind in diagnose.TARGET_TYPES)}
    missing = {name + end: np.nan for name in NOTEBOOK_KEYS if name not in CONTRASTS for end in INTERVAL}
    rows = []
    for cell in bar(cells(HERE), enabled=progress, desc="why cells", unit="cell"):
        row = score_cell(params, cell_settings(**cell))
        rows.append({**cell, "seeds": 1, **{k: v for k, v in row.items() if k in keep}, **missing})
    return pd.DataFrame(rows)


def _source(summary: dict, what: str) -> str:
    ok = [p for p in summary["points"].values() if p["status"] == "ok"]
    commits = ", ".join(sorted({p.get("commit") or "?" for p in ok}))
    return f"sweep {summary['sweep']} ({what}; seeds {summary['seeds']}; commit {commits})"


def factorial(params: dict, sweep: str = "auto", profile: str | None = None, progress: bool = True):
    """The factorial pooled over a sweep's seeds when that sweep has every cell, else scored here.

    Args:
        sweep: a sweep under ``runs/`` (``why-default``), ``"auto"`` (``why-<profile>`` when it
            exists) or ``""`` (always score the cells here, in ``params``' world).
    Returns:
        (table: one row per cell, where it came from: a sentence naming the sweep, its seeds and
        commits, or this run's seed).
    """
    summary = load_sweep(sweep, "why", profile)
    if summary is not None:
        table = from_sweep(summary)
        if table is not None:
            return table, _source(summary, "notebook 04 per cell")
        print(f"sweep {summary['sweep']} lacks a finished point in a cell: scoring the cells here instead")
    return score_here(params, progress), f"this run (one world: SEED {params.get('SEED', 0)})"


def scaling_curve(sweep: str = "auto", profile: str | None = None):
    """(:func:`scaling` of the ``scaling-<profile>`` sweep, where it came from), or (None, a sentence
    saying how to run it) when there is none."""
    summary = load_sweep(sweep, "scaling", profile)
    if summary is None:
        return None, "no scaling sweep has run: make scaling (ovkit sweep sweeps/scaling.yaml)"
    return scaling(summary), "from " + _source(summary, "notebook 04 per configuration")


def shown(table, columns: dict):
    """``table``'s estimates as ``+0.012 [-0.004, +0.028]`` strings, one column per ``columns`` entry
    (column → title), one row per cell (``layout / exposure``), and the number of seeds."""
    import pandas as pd

    from .seedstats import _mean_interval

    cells = table["layout"] + " / " + table["exposure"]
    out = {title: [_mean_interval(*row) for row in table[[name + end for end in INTERVAL]].to_numpy(float)]
           for name, title in columns.items()}
    return pd.DataFrame(out, index=cells.to_numpy()).assign(seeds=table["seeds"].to_numpy())


def scaling(summary: dict):
    """The scaling curve from a sweep of notebook 04 over OneVision's size and steps
    (``sweeps/scaling.yaml``): one row per grid cell with its parameters, the examples its three
    stages drew, their training seconds (summed), DPO's validation HR@10, and the gap to the
    reference cascade on test pooled over the cell's seeds; ``chosen`` marks the cell with the best
    validation HR@10 (ties: the fewer examples, then parameters). Cells with no finished point are
    left out."""
    import pandas as pd

    rows = []
    for cell, entry, stats, mean in _finished(summary):
        seconds = sum(mean.get(f"04.train_seconds.{stage}", np.nan) for stage in ("pretrain", "sft", "dpo"))
        row = {"cell": cell, "seeds": len(entry["points"]), "train_seconds": seconds,
               "parameters": mean.get("04.gen_parameters", np.nan),
               "examples": mean.get("04.train_examples", np.nan),
               "val_hr@10": mean.get("04.val_hr@10.dpo", np.nan)}
        rows.append(row | _interval(stats, "gap_vs_mca"))
    return _choose(pd.DataFrame(rows), ["val_hr@10", "examples", "parameters"], [False, True, True])


def _finished(summary: dict):
    """(label, entry, pooled stats, their means) of each sweep cell with a finished point."""
    for label, entry in summary.get("cells", {}).items():
        if entry.get("points"):
            stats = entry.get("metrics", {})
            yield label, entry, stats, {key: value.get("mean", np.nan) for key, value in stats.items()}


def _choose(table, by: list, ascending: list):
    """``table`` with ``chosen`` marking its first row sorted by ``by`` (stable: ties keep grid order)."""
    if not table.empty:
        order = table.sort_values(by, ascending=ascending, kind="stable")
        table["chosen"] = table.index == order.index[0]
    return table


def _interval(stats: dict, name: str) -> dict:
    """``name``, ``name_ci_low``, ``name_ci_high`` of a :data:`NOTEBOOK_KEYS` entry pooled over a sweep
    cell's seeds (``stats``: the cell's ``metrics`` in the summary); NaN where not recorded."""
    got = stats.get({**NOTEBOOK_KEYS, **SCREEN_KEYS}[name], {})
    return {name + end: (np.nan if got.get(field) is None else got[field])
            for end, field in zip(INTERVAL, ("mean", "ci_low", "ci_high"), strict=True)}


def _change(overrides: dict) -> str:
    """A sweep cell's settings as a short label (``sft_on=orders``); the kit's defaults: ``today's``."""
    from .config import settings_class

    changes = {}
    for name, values in overrides.items():
        cls = settings_class(name)
        if cls is None:
            raise ValueError(f"a screen varies settings dicts (GEN, SIM, …), not {name}")
        changes |= {k: v for k, v in values.items() if getattr(cls(), k, None) != v}
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "today's"


def screen(summary: dict):
    """A one-factor-at-a-time screen from a sweep of notebook 04 (``sweeps/training.yaml``: GEN's
    training signal and the decoder alone; ``sweeps/taste.yaml``: how strongly the simulated shoppers'
    taste drives them): one row per grid cell — its change from the kit's settings (``today's`` for
    none), its seeds, DPO's validation HR@10, HR@10 of the decoder alone (output prior off at serving),
    the taste-oracle − intent-oracle HR@10 (what knowing the shopper's taste buys) and the SFT gain,
    DPO gain and gap to the reference cascade on test, pooled over the cell's seeds. ``chosen`` marks
    the best validation HR@10 (ties: today's, then the first in the grid). Cells with no finished
    point are left out."""
    import pandas as pd

    rows = []
    for _, entry, stats, mean in _finished(summary):
        row = {"setting": _change(entry["overrides"]), "seeds": len(entry["points"]),
               "val_hr@10": mean.get("04.val_hr@10.dpo", np.nan),
               "decoder_only": mean.get("04.hr@10.decoder_only.dpo", np.nan)}
        for name in ("taste_gain", *CONTRASTS, "user_swap.dpo", "user_swap.mca"):
            row |= _interval(stats, name)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["today"] = table["setting"] == "today's"  # today's first among equals
    return _choose(table, ["val_hr@10", "today"], [False, False]).drop(columns="today")


SCREENS = {"training": "make training (ovkit sweep sweeps/training.yaml)",
           "taste": "make taste (ovkit sweep sweeps/taste.yaml)"}


def setting_key(setting: str) -> str:
    """A screen's setting label as a metric-key part: ``sft_on=orders`` → ``sft_on_orders``."""
    import re

    return "today" if setting == "today's" else re.sub(r"[^A-Za-z0-9.]+", "_", setting).strip("_")


def screen_table(stem: str, sweep: str = "auto", profile: str | None = None):
    """(:func:`screen` of the ``<stem>-<profile>`` sweep, where it came from), or (None, a sentence
    saying how to run it) when there is none; ``stem`` is one of :data:`SCREENS`."""
    summary = load_sweep(sweep, stem, profile)
    if summary is None:
        return None, f"no {stem} sweep has run: {SCREENS[stem]}"
    return screen(summary), "from " + _source(summary, "notebook 04 per setting")


def interval_records(table, screens: dict) -> dict:
    """What notebook 08 records as intervals: ``08.<contrast>.<layout>.<exposure>`` per factorial cell
    (``table``, :func:`factorial`) and ``08.<screen>.<setting>.<contrast>`` per row of each screen
    (``screens``: stem → :func:`screen` table or None). Contrasts not measured (NaN) are left out.
    Returns key → [estimate, ci_low, ci_high]."""
    screened = (*CONTRASTS, *SCREEN_KEYS, "user_swap.dpo", "user_swap.mca")
    rows = [(f"08.{{}}.{row['layout']}.{row['exposure']}", row, NOTEBOOK_KEYS)
            for row in table.to_dict("records")]
    rows += [(f"08.{stem}.{setting_key(row['setting'])}.{{}}", row, screened)
             for stem, found in screens.items() if found is not None for row in found.to_dict("records")]
    return {key.format(name): [row[name + end] for end in INTERVAL]
            for key, row, names in rows for name in names if not np.isnan(row[name])}


def prefix_shares(params: dict) -> dict:
    """Per SID layout, the share of colourway pairs whose SIDs differ only in the last code (this
    run's world; the SID stage is cached)."""
    out = {}
    for layout in FACTORS["layout"]:
        built = pipeline.load(with_settings(params, cell_settings(layout=layout)), upto="vrq")
        depth = len(built.ids.config.budget) - 1
        out[layout] = vrq.colourway_prefix_share(built.catalogue, built.ids.codes, depth)
    return out


def main(argv=None) -> int:
    """``python -m ovkit.why --profile P [--seeds S ...] [--out FILE]``: score every cell of
    :data:`FACTORS`' grid for a profile in each seed (a seed is a whole new world), write one row per
    cell and seed as CSV and print each cell's contrasts pooled over the seeds (stages cached as usual)."""
    import argparse
    import sys

    import pandas as pd

    from .runner import load_profile

    parser = argparse.ArgumentParser(prog="python -m ovkit.why", description=main.__doc__)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="SEEDs (default: the profile's)")
    parser.add_argument("--out", default="", help="CSV file of every cell and seed (default: print only)")
    args = parser.parse_args(argv)
    params, rows = load_profile(args.profile), []
    for seed in args.seeds if args.seeds else [params.get("SEED", 0)]:
        for cell in cells():
            print("seed", seed, "cell", cell, file=sys.stderr, flush=True)
            rows.append({**cell, "seed": seed, **score_cell({**params, "SEED": seed}, cell_settings(**cell))})
            if args.out:  # after every cell: an interrupted grid keeps what it scored
                pd.DataFrame(rows).to_csv(args.out, index=False)
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))
    print(pooled(table).round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
