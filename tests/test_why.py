"""Cells of the why-factorial: settings merged, one cell built and scored like notebook 04 scores it."""

import numpy as np
import pytest
from test_pipeline import TINY, shop  # noqa: F401  (a module fixture: the tiny shapes shop)

from ovkit import metrics, pipeline, why


def test_cell_settings_merge_into_the_profiles_dicts():
    changes = why.cell_settings(layout="shape_first", exposure="variants")
    assert changes == {"VRQ": {"layout": "shape_first"}, "SIM": {"exposure": "variants"}}
    merged = why.with_settings({"VRQ": {"levels": [4, 4]}, "SEED": 1}, changes)
    assert merged == {"VRQ": {"levels": [4, 4], "layout": "shape_first"}, "SEED": 1,
                      "SIM": {"exposure": "variants"}}
    with pytest.raises(ValueError, match="layout: vrq, shape_first"):
        why.cell_settings(layout="colour_first")


def test_a_cell_is_scored_on_its_own_logs_and_sids(kit_home, shop):  # noqa: F811
    params = {**TINY, "DATA_SOURCE": str(shop)}
    changes = why.cell_settings(layout="shape_first", exposure="variants")
    row = why.score_cell(params, changes)
    built = pipeline.load(why.with_settings(params, changes))  # the same cell, from the stage cache
    assert built.ids.config.layout == "shape_first" and built.logs.world.cfg.exposure == "variants"
    assert row["colourway_prefix_share"] == 1.0
    test = built.logs.test_sessions
    ordered = test["ordered"].to_numpy()
    sft, pretrain = (metrics.hits(built.ranked(stage), ordered, 10) for stage in ("sft", "pretrain"))
    assert row["hr@10.sft"] == pytest.approx(sft.mean())
    assert row["sft_gain"] == pytest.approx(sft.mean() - pretrain.mean())
    assert row["sft_gain_ci_low"] <= row["sft_gain"] <= row["sft_gain_ci_high"]
    assert row["gap_vs_mca"] == pytest.approx(row["hr@10.dpo"] - row["hr@10.mca"])
    assert row["reference_index"] in ("catalogue", "fused")
    assert all(np.isnan(v) or 0 <= v <= 1 for key, v in row.items() if key.startswith("hr@10."))


def test_pooled_pools_each_cells_seeds_with_their_own_intervals():
    import pandas as pd

    from ovkit import meta

    rows = []
    for layout, shift in (("vrq", 0.0), ("shape_first", 0.1)):
        runs = [(0.01, -0.02, 0.04), (0.03, 0.00, 0.06), (-0.01, -0.05, 0.03)]
        for seed, (est, low, high) in enumerate(runs):
            row = {"layout": layout, "exposure": "visual", "seed": seed}
            for name in why.CONTRASTS:
                row |= {name: est + shift, f"{name}_ci_low": low + shift, f"{name}_ci_high": high + shift}
            rows.append(row)
    table = why.pooled(pd.DataFrame(rows)).set_index("layout")
    assert table["seeds"].tolist() == [3, 3]
    expected = meta.pool([0.11, 0.13, 0.09], [0.08, 0.10, 0.05], [0.14, 0.16, 0.13])
    got = table.loc["shape_first", ["dpo_gain", "dpo_gain_ci_low", "dpo_gain_ci_high"]].tolist()
    assert got == pytest.approx([expected.estimate, expected.ci_low, expected.ci_high])
    one = why.pooled(pd.DataFrame(rows[4:5])).iloc[0]  # one run (shape_first, seed 1): its own interval
    assert one[["seeds", "sft_gain", "sft_gain_ci_low", "sft_gain_ci_high"]].tolist() == pytest.approx(
        [1, 0.13, 0.10, 0.16])


def _summary(per_cell_seeds: dict) -> dict:
    """A sweep summary as ovkit.sweep writes it, from each cell's per-seed notebook-04 metrics."""
    from ovkit import seedstats

    points, cells = {}, {}
    for label, runs in per_cell_seeds.items():
        ids = []
        for seed, metrics_ in enumerate(runs):
            pid = f"{label}_seed-{seed}"
            points[pid] = {"status": "ok", "seed": seed, "commit": "abc1234", "metrics": metrics_}
            ids.append(pid)
        cells[label] = {"points": ids, "seeds": list(range(len(runs))),
                        "metrics": seedstats.across_seeds(runs)[1]}
    return {"sweep": "why-tiny", "seeds": [0, 1], "points": points, "cells": cells}


def _run(shift: float, reference: str) -> dict:
    run = {"04.reference_mca": reference, "04.hr@10.mca.colourway": 0.3, "04.hr@10.mca_fused.colourway": 0.5,
           "04.hr@10.dpo.colourway": 0.2 + shift}
    for key in why.NOTEBOOK_KEYS.values():
        run |= {key: 0.02 + shift, f"{key}_ci_low": 0.0 + shift, f"{key}_ci_high": 0.04 + shift}
    return run


def test_the_factorial_from_a_sweep_pools_each_cells_seeds():
    from ovkit import meta

    here = [why.sweep_cell(cell) for cell in why.cells(why.HERE)]
    assert here == ["VRQ.layout=vrq,SIM.exposure=visual", "VRQ.layout=vrq,SIM.exposure=variants"]
    labels = [why.sweep_cell(cell) for cell in why.cells()][:4]  # the VRQ and shape-first cells
    assert len(why.cells()) == 6
    assert why.sweep_cell(why.cells()[-1]) == "VRQ.layout=random,SIM.exposure=variants"
    runs = {label: [_run(0.0, "mca"), _run(0.01 * i, "mca_fused")] for i, label in enumerate(labels)}
    summary = _summary(runs)
    table = why.from_sweep(summary).set_index(["layout", "exposure"])
    expected = meta.pool([0.02, 0.05], [0.0, 0.03], [0.04, 0.07])  # cell 3: shifts 0 and 0.03
    got = table.loc[("shape_first", "variants"), ["gap_vs_mca", "gap_vs_mca_ci_low", "gap_vs_mca_ci_high"]]
    assert got.tolist() == pytest.approx([expected.estimate, expected.ci_low, expected.ci_high])
    assert table["seeds"].tolist() == [2, 2, 2, 2]
    assert table.loc[("vrq", "visual"), "hr@10.mca.colourway"] == pytest.approx(0.4)  # each seed's reference
    assert table.loc[("shape_first", "variants"), "hr@10.dpo.colourway"] == pytest.approx(0.215)
    assert "random" not in set(table.index.get_level_values(0))  # a control cell the sweep lacks: left out
    random_cell = why.sweep_cell({"layout": "random", "exposure": "visual"})
    summary["cells"][random_cell] = dict(summary["cells"][labels[0]])
    assert len(why.from_sweep(summary)) == 5  # ... and shown when it ran
    del summary["cells"][labels[2]]  # a shape-first cell missing: the others are still shown
    assert len(why.from_sweep(summary)) == 4
    del summary["cells"][labels[1]]
    assert why.from_sweep(summary) is None  # a cell of the smallest version missing: nothing pooled


def test_factorial_reads_a_finished_sweep_and_scores_here_without_one(kit_home, monkeypatch):
    import json

    labels = [why.sweep_cell(cell) for cell in why.cells(why.HERE)]
    folder = kit_home / "runs" / "why-tiny"
    folder.mkdir(parents=True)
    summary = _summary({label: [_run(0.0, "mca")] for label in labels})
    (folder / "summary.json").write_text(json.dumps(summary))
    table, source = why.factorial({}, profile="tiny")
    assert len(table) == 2 and "sweep why-tiny" in source and "abc1234" in source
    monkeypatch.setattr(why, "score_here", lambda params, progress: ("scored here", params))
    assert why.factorial({"SEED": 3}, sweep="")[0] == ("scored here", {"SEED": 3})
    assert why.factorial({"SEED": 3}, profile="other")[1] == "this run (one world: SEED 3)"
    with pytest.raises(FileNotFoundError, match="no sweep summary for why-nope"):
        why.factorial({}, sweep="why-nope")
    assert why.scaling_curve(profile="tiny") == (None, "no scaling sweep has run: make scaling (ovkit sweep "
                                                       "sweeps/scaling.yaml)")


def test_the_scaling_curve_chooses_on_validation_and_reads_the_gap_on_test():
    from ovkit import seedstats

    def run(params, examples, val, gap):
        return {"04.gen_parameters": params, "04.train_examples": examples, "04.val_hr@10.dpo": val,
                "04.train_seconds.pretrain": 10.0, "04.train_seconds.sft": 5.0, "04.train_seconds.dpo": 1.0,
                "04.hr@10_diff.dpo_vs_mca": gap, "04.hr@10_diff.dpo_vs_mca_ci_low": gap - 0.02,
                "04.hr@10_diff.dpo_vs_mca_ci_high": gap + 0.02}

    grid = {"GEN.d_model=64": run(1e5, 1000, 0.30, -0.01), "GEN.d_model=128": run(4e5, 1000, 0.32, -0.05),
            "GEN.steps=x4": run(4e5, 4000, 0.32, -0.03), "GEN.d_model=256": None}
    cells = {cell: {"points": [f"{cell}_seed-0"], "metrics": seedstats.across_seeds([metrics])[1]}
             if metrics else {"points": []} for cell, metrics in grid.items()}
    table = why.scaling({"cells": cells}).set_index("cell")
    assert list(table.index) == ["GEN.d_model=64", "GEN.d_model=128", "GEN.steps=x4"]  # unfinished: left out
    assert table.loc["GEN.d_model=128", "train_seconds"] == 16.0
    assert table["chosen"].tolist() == [False, True, False]  # best validation; the tie to fewer examples
    gap = table.loc["GEN.d_model=128", ["gap_vs_mca", "gap_vs_mca_ci_low"]].tolist()
    assert gap == pytest.approx([-0.05, -0.07])


def test_a_screen_labels_each_change_and_chooses_on_validation():
    from ovkit import meta

    def run(val, shift):
        return _run(shift, "mca") | {"04.val_hr@10.dpo": val, "04.hr@10.decoder_only.dpo": 0.01}

    summary = _summary({"GEN.sft_on=orders": [run(0.3, 0.02)], "GEN.dpo_pairs=graded": [run(0.25, 0.0),
                        run(0.35, 0.01)], "GEN.beta=0.1": [run(0.2, 0.0)]})
    overrides = {"GEN.dpo_pairs=graded": {"dpo_pairs": "graded"}, "GEN.sft_on=orders": {"sft_on": "orders"},
                 "GEN.beta=0.1": {"beta": 0.1}}
    for label, change in overrides.items():
        summary["cells"][label]["overrides"] = {"GEN": change}
    table = why.screen(summary).set_index("setting")
    assert list(table.index) == ["sft_on=orders", "today's", "beta=0.1"]  # a default setting is today's
    assert table["val_hr@10"].tolist() == [0.3, 0.3, 0.2]
    assert table["chosen"].tolist() == [False, True, False]  # the tie goes to today's
    expected = meta.pool([0.02, 0.03], [0.0, 0.01], [0.04, 0.05])
    got = table.loc["today's", ["dpo_gain", "dpo_gain_ci_low", "dpo_gain_ci_high"]].tolist()
    assert got == pytest.approx([expected.estimate, expected.ci_low, expected.ci_high])
    summary["cells"]["GEN.beta=0.1"]["overrides"] = {"SIM": {"taste": 3}}
    assert why.screen(summary)["setting"].tolist()[-1] == "taste=3"
    summary["cells"]["GEN.beta=0.1"]["overrides"] = {"SEED": 3}
    with pytest.raises(ValueError, match="not SEED"):
        why.screen(summary)
    assert why.screen_table("taste", profile="nowhere") == (None, "no taste sweep has run: make taste "
                                                                  "(ovkit sweep sweeps/taste.yaml)")


def test_setting_keys_are_metric_key_parts():
    assert why.setting_key("today's") == "today"
    assert why.setting_key("sft_on=orders") == "sft_on_orders"
    assert why.setting_key("beta=0.1, dpo=listwise") == "beta_0.1_dpo_listwise"


def test_interval_records_name_each_cell_and_setting_and_skip_what_was_not_measured():
    import pandas as pd

    cell = {"layout": "vrq", "exposure": "visual", "seeds": 1}
    for name in why.NOTEBOOK_KEYS:  # one world: no user swaps
        measured = name in why.CONTRASTS
        cell |= {name + end: (v if measured else np.nan) for end, v in
                 zip(why.INTERVAL, (0.1, 0.0, 0.2), strict=True)}
    setting = {"setting": "beta=2.0", "seeds": 1}
    for name in (*why.CONTRASTS, "taste_gain", "user_swap.dpo", "user_swap.mca"):
        setting |= {name + end: v for end, v in zip(why.INTERVAL, (-0.1, -0.2, 0.0), strict=True)}
    got = why.interval_records(pd.DataFrame([cell]), {"training": pd.DataFrame([setting]), "taste": None})
    assert got["08.gap_vs_mca.vrq.visual"] == [0.1, 0.0, 0.2]
    assert "08.user_swap.dpo.vrq.visual" not in got
    assert got["08.training.beta_2.0.taste_gain"] == [-0.1, -0.2, 0.0]
    assert len(got) == 3 + 6
