"""The claims ledger's rules, verdicts and columns, and the run report."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import ovkit  # noqa: E402
from ovkit import report  # noqa: E402
from ovkit.report import INCONCLUSIVE, INVALID, LARGER, MISSING, NOT, PARTLY, REPRODUCED  # noqa: E402


def ci(key, est, low, high):
    """A metric and its CI companions."""
    return {key: est, f"{key}_ci_low": low, f"{key}_ci_high": high}


ALIGN, CONSIST = "01.recall@1_diff.aligned_vs_frozen", "02.consistency@1_diff.vrq_vs_best"
HR_PAR, MRR_PAR = "04.hr@10_rel_diff.dpo_vs_mca", "04.mrr@10_rel_diff.dpo_vs_mca"
SFT, DPO = "04.hr@10_diff.sft_vs_pretrain", "04.hr@10_diff.dpo_vs_sft"
SPEED, CTR, CVR, ORDERS = "05.speedup_total_at_1pct", "06.ctr.lift", "06.cvr.lift", "06.orders.lift"
KEEP, KEEP_VS = "01.heldout_ratio.aligned", "01.heldout_ratio_diff.aligned_vs_frozen"
COLD_EXACT, COLD_HR = report.COLD_KEYS["exact-SKU recall@10"], report.COLD_KEYS["HR@10"]

# every claim reproduced
MEASURED = {
    **ci(ALIGN, 0.068, 0.055, 0.080), "01.recall@1.aligned": 0.174, "01.recall@1.frozen": 0.106,
    "01.view_gap.aligned": -0.126, "01.view_gap.frozen": -0.120,
    **ci(CONSIST, 0.07, 0.05, 0.09), "02.best_baseline@1": "rqvae", "02.consistency@1.vrq": 0.515,
    "02.consistency@1.rqvae": 0.445,
    "02.icr.vrq": 0.99, "02.icr.rqvae": 0.967, "02.icr.opq": 0.95, "02.icr.rq_kmeans_frozen": 0.258,
    "02.colour_separation.vrq": 0.988,
    **ci(HR_PAR, -0.006, -0.04, 0.03), **ci(MRR_PAR, -0.01, -0.045, 0.03),
    "04.hr@10.dpo": 0.31, "04.hr@10.mca_reference": 0.312, "04.reference_mca": "mca_tuned",
    **ci(SFT, 0.03, 0.015, 0.045), **ci(DPO, 0.02, 0.005, 0.035),
    **ci(SPEED, 1.21, 1.15, 1.28), "05.hr10_rel_loss_at_best": 0.003, "05.best_policy": "δ 1",
    "05.chosen_on": "val",
    **ci(CTR, 0.03, 0.01, 0.05), **ci(CVR, 0.025, 0.005, 0.045), **ci(ORDERS, 0.0373, 0.0064, 0.0675),
    **ci(KEEP, 0.8, 0.75, 0.85), **ci(KEEP_VS, 0.02, -0.03, 0.07), "01.recall@1.aligned.heldout": 0.14,
    "01.heldout_ratio.frozen": 0.78,
    **ci(COLD_EXACT, -0.01, -0.04, 0.02), **ci(COLD_HR, 0.0, -0.03, 0.03),
    "04.recall_exact@10.dpo_cold_prior.cold": 0.42, "03.recall_exact@10.visual_only.cold": 0.43,
}


def _effects(key, partly, inconclusive, not_reproduced):
    return {PARTLY: ci(key, *partly), INCONCLUSIVE: ci(key, *inconclusive), NOT: ci(key, *not_reproduced)}


# claim → verdict → change to MEASURED that yields it
CASES = {
    "multi-view alignment": _effects(ALIGN, (0.005, 0.002, 0.008), (0.01, -0.005, 0.025),
                                     (-0.02, -0.03, -0.01)),
    "VRQ: views share shallow codes": _effects(CONSIST, (0.004, 0.001, 0.009), (0.0, -0.02, 0.02),
                                               (0.001, -0.004, 0.006)),
    "VRQ: unique IDs, near-duplicates apart": {
        PARTLY: {"02.colour_separation.vrq": 0.9},  # uniquer than every baseline, colourways collide
        INCONCLUSIVE: {"02.icr.vrq": 0.972},  # within the tolerance of the best baseline
        NOT: {"02.icr.vrq": 0.2},  # below every baseline
    },
    "offline quality on par with MCA": {
        PARTLY: ci(MRR_PAR, -0.02, -0.07, 0.03),  # HR@10 non-inferior, MRR@10 undetermined
        INCONCLUSIVE: {**ci(HR_PAR, -0.02, -0.07, 0.03), **ci(MRR_PAR, -0.02, -0.08, 0.04)},
        NOT: ci(MRR_PAR, -0.08, -0.1, -0.06),  # MRR@10 inferior
    },
    "SFT adds personalisation": _effects(SFT, (0.005, 0.001, 0.009), (0.002, -0.012, 0.015),
                                         (-0.02, -0.04, -0.001)),
    "DPO improves further": _effects(DPO, (0.005, 0.001, 0.009), (0.002, -0.012, 0.015),
                                     (-0.01, -0.02, -0.002)),
    "dynamic pruning": _effects(SPEED, (1.08, 1.03, 1.12), (1.1, 0.95, 1.25), (1.0, 0.95, 1.05)),
    "online: item CTR": _effects(CTR, (0.01, 0.005, 0.015), (0.01, -0.01, 0.03), (-0.01, -0.03, 0.01)),
    "online: CVR": _effects(CVR, (0.01, 0.002, 0.02), (0.01, -0.01, 0.03), (-0.05, -0.08, -0.02)),
    "online: order volume": _effects(ORDERS, (0.015, 0.006, 0.025), (0.0, -0.03, 0.04), (0.0, -0.02, 0.03)),
    "kit: alignment holds under unseen conditions": {
        PARTLY: ci(KEEP, 0.72, 0.66, 0.78),  # as robust as frozen, but 70% retention undetermined
        INCONCLUSIVE: {**ci(KEEP, 0.72, 0.66, 0.78), **ci(KEEP_VS, -0.05, -0.11, 0.01)},
        NOT: ci(KEEP_VS, -0.2, -0.25, -0.15),  # clearly less robust than the frozen backbone
    },
    "kit: new products found as well as by visual retrieval": {
        PARTLY: ci(COLD_HR, -0.03, -0.09, 0.03),  # exact recall non-inferior, HR@10 undetermined
        INCONCLUSIVE: {**ci(COLD_EXACT, -0.03, -0.09, 0.03), **ci(COLD_HR, -0.03, -0.09, 0.03)},
        NOT: ci(COLD_EXACT, -0.18, -0.22, -0.15),  # the finding: 0.353 vs 0.431
    },
}


def verdicts(metrics):
    return report.ledger(metrics).set_index("claim")["verdict"].to_dict()


def row(metrics, claim):
    return report.ledger(metrics).set_index("claim").loc[claim]


def test_every_claim_has_a_case_for_every_verdict():
    assert list(CASES) == [c.topic for c in report.CLAIMS]
    assert all(set(cases) | {REPRODUCED} == set(report.VERDICTS) for cases in CASES.values())
    assert set(verdicts(MEASURED).values()) == {REPRODUCED}


@pytest.mark.parametrize("claim,verdict", [(c, v) for c, cases in CASES.items() for v in cases])
def test_each_rule_gives_each_verdict(claim, verdict):
    v = verdicts({**MEASURED, **CASES[claim][verdict]})
    assert v[claim] == verdict
    assert all(v[other] == REPRODUCED for other in v if other != claim)  # one claim's keys only


@pytest.mark.parametrize("change,verdict", [
    ({"02.icr.vrq": 0.867}, PARTLY),  # 10 points below rqvae but far above rq_kmeans_frozen
    ({"02.icr.vrq": 0.9771}, REPRODUCED),  # d = +0.0101, just past the 0.01 tolerance
    ({"02.icr.vrq": 0.9769}, INCONCLUSIVE),  # d = +0.0099
    ({"02.icr.vrq": 0.9571}, INCONCLUSIVE),  # d = −0.0099
    ({"02.icr.vrq": 0.99, "02.icr.rq_kmeans_frozen": 0.985}, INCONCLUSIVE),  # the best baseline counts
    ({"02.icr.vrq": 0.5, "02.icr.rqvae": 0.6, "02.icr.opq": 0.6, "02.icr.rq_kmeans_frozen": 0.6}, NOT),
])
def test_uniqueness_rule_boundaries(change, verdict):
    assert verdicts({**MEASURED, **change})["VRQ: unique IDs, near-duplicates apart"] == verdict


def test_pruning_that_costs_quality_is_partly():
    claim = "dynamic pruning"
    assert verdicts({**MEASURED, "05.hr10_rel_loss_at_best": 0.02})[claim] == PARTLY
    assert verdicts({**MEASURED, "05.hr10_rel_loss_at_best": 0.01})[claim] == REPRODUCED  # ≤ 1% is on par
    lossy_and_slow = {**MEASURED, "05.hr10_rel_loss_at_best": 0.02, **ci(SPEED, 1.0, 0.95, 1.05)}
    assert verdicts(lossy_and_slow)[claim] == NOT


@pytest.mark.parametrize("low,high,verdict", [
    (0.01, 0.05, REPRODUCED), (0.0215, 0.03, REPRODUCED), (0.001, 0.0215, REPRODUCED),  # P on either end
    (0.001, 0.02, PARTLY),  # real, but smaller than the paper's
    (0.025, 0.05, LARGER), (0.06, 0.07, LARGER),  # beyond the paper in its direction: not "partly"
    (0.0, 0.03, INCONCLUSIVE), (-0.01, 0.0215, INCONCLUSIVE),  # holds 0 (0 counts) and P
    (-0.01, 0.2, INCONCLUSIVE),  # holds 0 and values far beyond P
    (0.0, 0.02, NOT), (-0.05, -0.01, NOT),  # excludes P below / the opposite effect
    (math.nan, 0.03, INCONCLUSIVE),
])
def test_judge_effect_with_the_paper_value(low, high, verdict):
    assert report.judge_effect((low + high) / 2, low, high, paper=0.0215) == verdict


def test_an_effect_three_times_the_papers_is_larger_whatever_its_width():
    """The review's case: 3× the paper with a wide CI was 'reproduced', with a tight one 'partly'."""
    assert report.judge_effect(0.0645, 0.02, 0.11, paper=0.0215) == REPRODUCED  # wide: holds P
    assert report.judge_effect(0.0645, 0.06, 0.07, paper=0.0215) == LARGER
    assert report.judge_effect(0.34, 0.30, 0.38, paper=0.21) == LARGER  # pruning 1.34× vs the paper's 1.21×
    assert report.is_reproduced(LARGER) and report.is_reproduced(REPRODUCED)
    assert not report.is_reproduced(PARTLY)


@pytest.mark.parametrize("est,low,high,verdict", [
    (0.02, 0.001, 0.05, REPRODUCED), (0.01, 0.001, 0.01, REPRODUCED),  # the estimate reaches it
    (0.2, 0.02, 0.5, REPRODUCED),  # a lower bound: no upper limit
    (0.0065, 0.002, 0.011, PARTLY),  # the review's case: the CI reaches 0.01, the estimate does not
    (0.005, 0.001, 0.0099, PARTLY),
    (0.005, 0.0, 0.01, INCONCLUSIVE), (0.0, -0.5, 0.5, INCONCLUSIVE),
    (0.0, -0.01, 0.0099, NOT), (-0.03, -0.05, -0.01, NOT),
])
def test_judge_effect_with_a_smallest_effect_of_interest(est, low, high, verdict):
    assert report.judge_effect(est, low, high, minimum=0.01) == verdict


@pytest.mark.parametrize("est,low,high", [(0.05, 0.01, 0.03), (-0.01, 0.0, 0.02), (0.3, 0.1, 0.2)])
def test_an_estimate_outside_its_interval_is_an_error(est, low, high):
    with pytest.raises(ValueError, match="outside its own interval"):
        report.judge_effect(est, low, high, minimum=0.01)
    with pytest.raises(ValueError, match="outside its own interval"):
        report.judge_effect(est, low, high, paper=0.0215)


def test_the_ledger_marks_an_estimate_outside_its_interval_invalid():
    r = row({**MEASURED, **ci(SFT, 0.05, 0.015, 0.045)}, "SFT adds personalisation")
    assert r["verdict"] == INVALID and "outside its own interval" in r["kit"]
    assert verdicts(MEASURED)["DPO improves further"] == REPRODUCED  # the other rows stand


def test_pruning_is_judged_on_total_time_with_the_median_beside():
    m = {**MEASURED, **ci("05.speedup_at_1pct", 1.01, 1.0, 1.48), **ci(SPEED, 1.5, 1.3, 1.7)}
    r = row(m, "dynamic pruning")
    assert r["verdict"] == LARGER  # the fixture: median 1.01 [1.00, 1.48], total 1.50
    assert "total time 1.50×" in r["kit"] and "median query 1.01× [1.00, 1.48]" in r["kit"]
    assert r["evidence"] == f"`{SPEED}`"


def test_judge_effect_errors():
    with pytest.raises(ValueError, match="exactly one"):
        report.judge_effect(0.1, 0.0, 0.2)
    with pytest.raises(ValueError, match="exactly one"):
        report.judge_effect(0.1, 0.0, 0.2, paper=0.1, minimum=0.01)
    with pytest.raises(ValueError, match="must be > 0"):
        report.judge_effect(0.1, 0.0, 0.2, paper=-0.02)
    with pytest.raises(ValueError, match="low end"):
        report.judge_effect(0.1, 0.2, 0.0, minimum=0.01)


@pytest.mark.parametrize("intervals,verdict", [
    ({"hr": (0.0, -0.05, 0.04), "mrr": (0.01, -0.02, 0.05)}, REPRODUCED),  # −margin itself passes
    ({"hr": (0.0, -0.05, 0.04), "mrr": (0.0, -0.06, 0.04)}, PARTLY),
    ({"hr": (-0.05, -0.06, -0.05), "mrr": (0.0, -0.08, 0.04)}, INCONCLUSIVE),  # high = −margin: not inferior
    ({"hr": (0.0, -0.01, 0.01), "mrr": (-0.1, -0.15, -0.051)}, NOT),  # one inferior outweighs the rest
    ({"hr": (-0.2, -0.3, -0.1)}, NOT),
])
def test_judge_noninferior(intervals, verdict):
    assert report.judge_noninferior(intervals, margin=0.05) == verdict


def test_judge_noninferior_needs_metrics():
    with pytest.raises(ValueError, match="no metrics"):
        report.judge_noninferior({}, margin=0.05)


def test_missing_metrics_are_not_measured():
    no_orders = {k: v for k, v in MEASURED.items() if not k.startswith(ORDERS)}
    r = row(no_orders, "online: order volume")
    assert r["verdict"] == MISSING and r["kit"] == "run notebook 06 (no 06.orders.lift)"
    assert r["evidence"] == "`06.orders.lift`"
    no_high = {k: v for k, v in MEASURED.items() if k != f"{SFT}_ci_high"}
    assert row(no_high, "SFT adds personalisation")["kit"] == f"run notebook 04 (no {SFT}_ci_high)"
    no_baselines = {k: v for k, v in MEASURED.items() if not k.startswith("02.icr.") or k == "02.icr.vrq"}
    r = row(no_baselines, "VRQ: unique IDs, near-duplicates apart")
    assert r["verdict"] == MISSING and "02.icr.<name>" in r["kit"]
    assert set(verdicts({}).values()) == {MISSING}


def test_ledger_columns_paper_values_and_kit_text():
    table = report.ledger(MEASURED)
    assert list(table.columns) == ["claim", "paper", "paper_value", "kit", "verdict", "evidence", "rule",
                                   "why"]
    assert (table["why"] == "").all()  # notebook 08 has not run
    values = table.set_index("claim")["paper_value"]
    assert values["online: item CTR"] == "+2.15%" and values["online: CVR"] == "+2.27%"
    assert values["online: order volume"] == "+3.12%" and values["dynamic pruning"] == "1.21×"
    assert values["offline quality on par with MCA"] == "on par"
    assert values["multi-view alignment"] == values["DPO improves further"] == "— (no number)"
    kit = table.set_index("claim")["kit"]
    assert kit["online: order volume"] == "+3.73% [+0.64%, +6.75%]"
    assert kit["multi-view alignment"] == ("Recall@1 0.174 vs 0.106 frozen: +0.068 [+0.055, +0.080]; "
                                           "view gap -0.126 vs -0.120")
    assert kit["dynamic pruning"] == ("total time 1.21× [1.15, 1.28] at batch 1 (δ 1, chosen on val), "
                                      "HR@10 change on test -0.3%")
    assert "rqvae (best baseline)" in kit["VRQ: views share shallow codes"]
    unique = kit["VRQ: unique IDs, near-duplicates apart"]
    assert unique.startswith("99.0% unique before disambiguation vs 96.7% rqvae (best baseline); 98.8%")
    assert "(mca_tuned)" in kit["offline quality on par with MCA"]
    assert "MRR@10 -1.00% [-4.50%, +3.00%]" in kit["offline quality on par with MCA"]
    rules = table.set_index("claim")["rule"]
    assert "margin 5%" in rules["offline quality on par with MCA"]
    assert "tolerance 0.01" in rules["VRQ: unique IDs, near-duplicates apart"]
    assert "+0.01 (smallest effect of interest)" in rules["SFT adds personalisation"]
    assert "+2.15%" in rules["online: item CTR"] and "> 1%" in rules["dynamic pruning"]


def test_report_holds_ledger_figures_tables_and_timings(kit_home):
    for key, value in MEASURED.items():
        ovkit.record(key, value)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    path = ovkit.record_figure("05.pareto", fig, "latency vs HR@10")
    plt.close(fig)
    assert path.read_bytes()[:4] == b"\x89PNG"
    import pandas as pd
    ovkit.record_table("04.offline", pd.DataFrame({"hr@10": [0.31]}, index=["dpo"]))
    timings = '{"notebooks": {"00_a.ipynb": {"seconds": 3.0, "status": "ok"}}}'
    (kit_home / "runs" / "pytest" / "timings.json").write_text(timings)
    text = report.write("pytest", {"SEED": 0}).read_text()
    assert "## Claims ledger" in text
    assert "| claim | paper | paper_value | kit | verdict | rule | evidence |" in text
    ctr = "| online: item CTR | +2.15% item CTR over MCA | +2.15% | +3.00% [+1.00%, +5.00%] | reproduced |"
    assert ctr in text
    assert "| dynamic pruning |" in text
    assert "![05.pareto](figures/05.pareto.png)" in text and "latency vs HR@10" in text
    assert "## Table `04.offline`" in text and "| 00_a.ipynb | ok | 3.0 |" in text
    assert "| `06.ctr.lift` | 0.03 |" in text and "SEED: 0" in text
    with pytest.raises(ValueError, match="<notebook>.<name>"):
        ovkit.record_figure("pareto", fig, "no notebook prefix")


def test_report_warns_when_metrics_come_from_different_runs(kit_home, monkeypatch):
    monkeypatch.setenv("OVKIT_PARAMS_HASH", "aaaaaaaaaaaa")
    monkeypatch.setenv("OVKIT_COMMIT", "1111111")
    ovkit.record("01.recall@1.aligned", 0.2)
    assert "**Warning:**" not in report.write("pytest").read_text()
    monkeypatch.setenv("OVKIT_PARAMS_HASH", "bbbbbbbbbbbb")
    ovkit.record("04.hr@10.dpo", 0.3)
    text = report.write("pytest").read_text()
    assert "**Warning:**" in text and "aaaaaaaaaaaa" in text and "bbbbbbbbbbbb" in text


def test_the_why_column_reads_notebook_08s_cells():
    cells = {"vrq.visual": (-0.045, -0.06, -0.03), "vrq.variants": (-0.02, -0.045, 0.005),
             "shape_first.visual": (-0.04, -0.06, -0.02), "shape_first.variants": (-0.03, -0.05, -0.01)}
    metrics = {**MEASURED, "08.why_seeds": 3}
    for cell, (est, low, high) in cells.items():
        sft_low = 0.002 if cell == "vrq.variants" else -0.005
        metrics |= {f"08.gap_vs_mca.{cell}": est, f"08.gap_vs_mca.{cell}_ci_low": low,
                    f"08.gap_vs_mca.{cell}_ci_high": high, f"08.sft_gain.{cell}": 0.01,
                    f"08.sft_gain.{cell}_ci_low": sft_low, f"08.sft_gain.{cell}_ci_high": 0.02}
    why = report.ledger(metrics).set_index("claim")["why"]
    gap = why["offline quality on par with MCA"]
    assert gap.startswith("OneVision − reference cascade per cell (notebook 08, 3 seeds): shape_first/")
    assert "vrq/variants -0.020 [-0.045, +0.005]" in gap and gap.endswith("holds 0 in vrq/variants")
    assert why["SFT adds personalisation"].endswith("→ above 0 in vrq/variants")
    assert why["DPO improves further"] == "" and why["online: CVR"] == ""  # not measured / no experiment
    metrics = {k: v for k, v in metrics.items() if not k.startswith("08.gap_vs_mca.vrq.variants")}
    gap = report.ledger(metrics).set_index("claim")["why"]["offline quality on par with MCA"]
    assert gap.endswith("OneVision stays below the cascade in every cell")  # the cells left are all < 0
