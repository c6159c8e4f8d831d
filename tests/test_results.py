import json

import numpy as np
import pytest

import ovkit


def test_record_writes_one_file_per_notebook(kit_home):
    ovkit.record("00.n_skus", np.int64(12))
    ovkit.record("00.build_seconds", 1.5)
    ovkit.record("01.recall@1.frozen", float("nan"))
    folder = kit_home / "runs" / "pytest" / "metrics"
    assert json.loads((folder / "00.json").read_text()) == {"00.build_seconds": 1.5, "00.n_skus": 12}
    assert ovkit.load_metrics("pytest") == {"00.build_seconds": 1.5, "00.n_skus": 12,
                                            "01.recall@1.frozen": None}


def test_record_rejects_bad_keys_and_values(kit_home):
    with pytest.raises(ValueError, match="<notebook>.<name>"):
        ovkit.record("n_skus", 1)
    with pytest.raises(TypeError):
        ovkit.record("00.x", [1, 2])


def test_record_table_lands_in_the_report(kit_home):
    import pandas as pd

    from ovkit import report as run_report

    table = pd.DataFrame({"icr": [0.91234, 1.0], "n": [3, 4]}, index=pd.Index(["vrq", "opq"], name="method"))
    ovkit.record_table("02.sid_report", table)
    text = (kit_home / "runs" / "pytest" / "tables" / "02.sid_report.md").read_text()
    assert text.splitlines()[0] == "| method | icr | n |"
    assert "| vrq | 0.912 | 3 |" in text
    report = run_report.write("pytest").read_text()
    assert "## Table `02.sid_report`" in report and "| opq | 1.000 | 4 |" in report
    with pytest.raises(ValueError, match="<notebook>.<name>"):
        ovkit.record_table("sid_report", table)
