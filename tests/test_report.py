"""The claims ledger's verdicts and the run report."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

import ovkit  # noqa: E402
from ovkit import report  # noqa: E402

MEASURED = {
    "01.aligned_over_frozen@1": 1.65, "01.recall@1.aligned": 0.174, "01.recall@1.frozen": 0.106,
    "02.consistency@1.vrq": 0.515, "02.consistency@1.rqvae": 0.445, "02.consistency@1.opq": 0.177,
    "02.unique_after_dedup.vrq": 1.0, "02.colour_separation.vrq": 0.988, "02.icr.vrq": 0.97,
    "04.hr@10_ratio_vs_mca": 1.0, "04.hr@10.dpo": 0.31, "03.hr@10.mca": 0.31,
    "04.hr@10_diff.dpo_vs_mca_ci_low": -0.023, "04.hr@10_diff.dpo_vs_mca_ci_high": 0.025,
    "04.hr@10_diff.sft_vs_pretrain": 0.002, "04.hr@10_diff.sft_vs_pretrain_ci_low": -0.012,
    "04.hr@10_diff.sft_vs_pretrain_ci_high": 0.015,
    "04.hr@10_diff.dpo_vs_sft": -0.01, "04.hr@10_diff.dpo_vs_sft_ci_low": -0.02,
    "04.hr@10_diff.dpo_vs_sft_ci_high": -0.002,
    "05.speedup_at_1pct": 1.21, "05.hr10_rel_loss_at_best": -0.005, "05.best_policy": "δ 1",
    "06.ctr.lift": 0.03, "06.ctr.lift_ci_low": 0.01, "06.ctr.lift_ci_high": 0.05,
    "06.cvr.lift": -0.01, "06.cvr.lift_ci_low": -0.03, "06.cvr.lift_ci_high": 0.01,
}


def verdicts(metrics):
    return report.ledger(metrics).set_index("claim")["verdict"].to_dict()


def test_ledger_applies_each_rule():
    v = verdicts(MEASURED)
    assert v["multi-view alignment"] == v["VRQ: views share shallow codes"] == "reproduced"
    assert v["VRQ: unique IDs"] == "reproduced"
    assert v["offline quality on par with MCA"] == v["dynamic pruning"] == "reproduced"
    assert v["SFT adds personalisation"] == "partly"  # gain > 0, CI reaches below 0
    assert v["DPO improves further"] == "not reproduced"
    assert v["online: item CTR"] == "reproduced" and v["online: CVR"] == "not reproduced"
    assert v["online: order volume"] == "not measured"  # 06.orders.lift was never recorded
    row = report.ledger(MEASURED).set_index("claim").loc["online: order volume"]
    assert "run notebook 06" in row["kit"] and row["evidence"] == "`06.orders.lift`"
    kit = report.ledger(MEASURED).set_index("claim").loc["online: item CTR", "kit"]
    assert kit == "+3.00% [+1.00%, +5.00%]"


@pytest.mark.parametrize("change,claim,verdict", [
    ({"02.consistency@1.rqvae": 0.6}, "VRQ: views share shallow codes", "partly"),
    ({"02.consistency@1.rqvae": 0.6, "02.consistency@1.opq": 0.6}, "VRQ: views share shallow codes",
     "not reproduced"),
    ({"02.unique_after_dedup.vrq": 0.99}, "VRQ: unique IDs", "not reproduced"),
    ({"02.colour_separation.vrq": 0.9}, "VRQ: unique IDs", "partly"),
    ({"04.hr@10_ratio_vs_mca": 0.93}, "offline quality on par with MCA", "partly"),
    ({"04.hr@10_ratio_vs_mca": 0.96, "04.hr@10_diff.dpo_vs_mca_ci_high": -0.001},
     "offline quality on par with MCA", "partly"),
    ({"04.hr@10_ratio_vs_mca": 0.8}, "offline quality on par with MCA", "not reproduced"),
    ({"05.speedup_at_1pct": 1.1}, "dynamic pruning", "partly"),
    ({"05.speedup_at_1pct": 1.0}, "dynamic pruning", "not reproduced"),
    ({"01.aligned_over_frozen@1": 0.9}, "multi-view alignment", "not reproduced"),
])
def test_ledger_verdict_boundaries(change, claim, verdict):
    assert verdicts({**MEASURED, **change})[claim] == verdict


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
    timings = '{"00_a.ipynb": {"seconds": 3.0, "status": "ok"}}'
    (kit_home / "runs" / "pytest" / "timings.json").write_text(timings)
    text = report.write("pytest", {"SEED": 0}).read_text()
    assert "## Claims ledger" in text and "| dynamic pruning |" in text and "reproduced" in text
    assert "![05.pareto](figures/05.pareto.png)" in text and "latency vs HR@10" in text
    assert "## Table `04.offline`" in text and "| 00_a.ipynb | ok | 3.0 |" in text
    assert "| `06.ctr.lift` | 0.03 |" in text and "SEED: 0" in text
    with pytest.raises(ValueError, match="<notebook>.<name>"):
        ovkit.record_figure("pareto", fig, "no notebook prefix")
