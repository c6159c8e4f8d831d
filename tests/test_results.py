import json
import subprocess

import numpy as np
import pytest

import ovkit
from ovkit import results


@pytest.fixture
def from_run(monkeypatch):
    """Record as a runner's kernel does: parameter hash and commit come from the environment."""
    def set_run(params="abc123def456", commit="1234567"):
        monkeypatch.setenv(results.PARAMS_ENV, params)
        monkeypatch.setenv(results.COMMIT_ENV, commit)
    set_run()
    return set_run


def test_record_writes_one_file_per_notebook(kit_home, from_run):
    ovkit.record("00.n_skus", np.int64(12))
    ovkit.record("00.build_seconds", 1.5)
    ovkit.record("01.recall@1.frozen", float("nan"))
    folder = kit_home / "runs" / "pytest" / "metrics"
    provenance = {"params": "abc123def456", "commit": "1234567", "profile": "pytest"}
    assert json.loads((folder / "00.json").read_text()) == {
        "00.build_seconds": 1.5, "00.n_skus": 12, results.PROVENANCE_KEY: provenance}
    assert ovkit.load_metrics("pytest") == {"00.build_seconds": 1.5, "00.n_skus": 12,
                                            "01.recall@1.frozen": None}
    assert results.load_provenance("pytest") == {"00": provenance, "01": provenance}


def test_record_interactive_computes_the_commit_once(kit_home, monkeypatch):
    monkeypatch.delenv(results.PARAMS_ENV, raising=False)
    monkeypatch.delenv(results.COMMIT_ENV, raising=False)
    calls = []
    monkeypatch.setattr(results, "git_commit", lambda root: calls.append(root) or "abcdef0+dirty")
    results._session_commit.cache_clear()
    try:
        ovkit.record("00.a", 1)
        ovkit.record("00.b", 2)
    finally:
        results._session_commit.cache_clear()
    assert len(calls) == 1
    assert results.load_provenance("pytest")["00"] == {
        "params": "interactive", "commit": "abcdef0+dirty", "profile": "pytest"}
    assert ovkit.load_metrics("pytest") == {"00.a": 1, "00.b": 2}


def test_record_under_another_provenance_starts_the_file_afresh(kit_home, from_run):
    ovkit.record("00.old", 1)
    ovkit.record("01.kept", 1)
    from_run(params="fedcba654321")
    ovkit.record("00.new", 2)
    assert ovkit.load_metrics("pytest") == {"00.new": 2, "01.kept": 1}
    with pytest.raises(ValueError):
        ovkit.record("_provenance.x", 1)


def test_git_commit(tmp_path, monkeypatch):
    assert results.git_commit(tmp_path) == "unknown"  # not a checkout
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git + ["init", "-q"], check=True)
    (tmp_path / "a.txt").write_text("1")
    subprocess.run(git + ["add", "a.txt"], check=True)
    subprocess.run(git + ["commit", "-qm", "one"], check=True)
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
    sha = head.stdout.strip()
    (tmp_path / "untracked.txt").write_text("x")  # untracked files don't make it dirty
    assert results.git_commit(tmp_path) == sha
    (tmp_path / "a.txt").write_text("2")
    assert results.git_commit(tmp_path) == f"{sha}+dirty"
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no git at all
    assert results.git_commit(tmp_path) == "unknown"


def test_provenance_warning(kit_home, from_run):
    assert results.provenance_warning("pytest") is None  # nothing recorded
    for nb in ("00", "01", "02"):
        ovkit.record(f"{nb}.x", 1)
    assert results.provenance_warning("pytest") is None
    from_run(params="fedcba654321")
    ovkit.record("01.x", 2)
    text = results.provenance_warning("pytest")
    assert "notebooks 00, 02: parameters abc123def456, commit 1234567" in text
    assert "notebook 01: parameters fedcba654321, commit 1234567" in text
    from_run(commit="7654321+dirty")  # same parameters, other code
    ovkit.record("01.x", 3)
    assert "notebook 01: parameters abc123def456, commit 7654321+dirty" in results.provenance_warning()
    folder = kit_home / "runs" / "pytest" / "metrics"
    (folder / "01.json").write_text(json.dumps({"01.x": 4}))  # written by a kit before provenance
    text = results.provenance_warning("pytest")
    assert "notebook 01: no provenance" in text and "notebooks 00, 02:" in text
    assert results.load_provenance("pytest")["01"] is None and ovkit.load_metrics()["01.x"] == 4


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


def test_record_interval_writes_the_estimate_and_its_ci(kit_home, from_run):
    ovkit.record_interval("04.hr@10_diff.dpo_vs_sft", (0.01, -0.02, 0.04))
    assert results.interval_keys("x.y") == ("x.y", "x.y_ci_low", "x.y_ci_high")
    assert ovkit.load_metrics("pytest") == {"04.hr@10_diff.dpo_vs_sft": 0.01,
                                            "04.hr@10_diff.dpo_vs_sft_ci_low": -0.02,
                                            "04.hr@10_diff.dpo_vs_sft_ci_high": 0.04}
    with pytest.raises(ValueError, match="takes \\(estimate, low, high\\), got 2"):
        ovkit.record_interval("04.x", (1, 2))
