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

# Each factor's levels (kit choices): settings overrides merged into the profile's dicts.
FACTORS = {
    "layout": {"vrq": {"VRQ": {"layout": "vrq"}}, "shape_first": {"VRQ": {"layout": "shape_first"}}},
    "exposure": {"visual": {"SIM": {"exposure": "visual"}}, "variants": {"SIM": {"exposure": "variants"}}},
}
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


def main(argv=None) -> int:
    """``python -m ovkit.why --profile P [--seeds S ...] [--out FILE]``: score every cell of
    :data:`FACTORS`' grid for a profile in each seed (a seed is a whole new world), write one row per
    cell and seed as CSV and print each cell's contrasts pooled over the seeds (stages cached as usual)."""
    import argparse
    import itertools
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
        for levels in itertools.product(*(list(v) for v in FACTORS.values())):
            cell = dict(zip(FACTORS, levels, strict=True))
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
