"""The notebook runner on a throwaway project of two tiny notebooks."""

import json

import nbformat
import pytest

from ovkit import runner
from ovkit.runner import RunError


def _notebook(path, params_src, body_src):
    cell = nbformat.v4.new_code_cell(params_src)
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell(body_src)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def project(kit_home, monkeypatch):
    root = kit_home / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "params").mkdir()
    _notebook(root / "notebooks" / "00_first.ipynb", "SIZE: int = 1  # size\nSEED: int = 0",
              "import ovkit\novkit.record('00.size', SIZE * 10)")
    _notebook(root / "notebooks" / "01_second.ipynb", "SEED: int = 0\nFAIL: bool = False",
              "import ovkit\nassert not FAIL, 'asked to fail'\novkit.record('01.seed', SEED)")
    (root / "params" / "tiny.yaml").write_text("SIZE: 3\nSEED: 7\n")
    monkeypatch.setenv("OVKIT_ROOT", str(root))
    return root


def test_discover_reads_parameter_cells(project):
    found = runner.discover()
    assert [nb.number for nb in found] == ["00", "01"]
    assert set(found[1].parameters) == {"SEED", "FAIL"}


def test_unknown_parameter_lists_valid_names(project):
    notebooks = runner.discover()
    expected = r"(?s)'SIZ' \(did you mean 'SIZE'\?\).*Valid parameters: FAIL, SEED, SIZE"
    with pytest.raises(RunError, match=expected):
        runner.validate_parameters({"SIZ": 1}, notebooks, "-p")
    (project / "params" / "typo.yaml").write_text("SEEED: 1\n")
    with pytest.raises(RunError, match="params/typo.yaml"):
        runner.run("typo")


def test_unknown_profile_and_notebook(project):
    with pytest.raises(RunError, match="Profiles: tiny"):
        runner.run("nope")
    with pytest.raises(RunError, match="no notebook '05'"):
        runner.run("tiny", only=["05"])


def test_parse_overrides_reads_yaml_values():
    assert runner.parse_overrides(["A=3", "B=0.5", "C={x: 1}", "D=text"]) == {
        "A": 3, "B": 0.5, "C": {"x": 1}, "D": "text"}
    with pytest.raises(RunError, match="key=value"):
        runner.parse_overrides(["A"])


def test_run_executes_merges_metrics_and_reports(project, kit_home):
    report = runner.run("tiny", overrides=["SIZE=4"])
    out = kit_home / "runs" / "tiny"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == {"00.size": 40, "01.seed": 7}
    assert (out / "notebooks" / "00_first.ipynb").exists()
    text = report.read_text()
    assert "`00.size` | 40" in text and "01_second.ipynb | ok" in text
    src = nbformat.read(project / "notebooks" / "00_first.ipynb", 4)
    assert not any(c.get("outputs") for c in src.cells if c.cell_type == "code")


def test_failing_notebook_names_notebook_and_cell(project, kit_home):
    with pytest.raises(RunError, match=r"01_second.ipynb failed in cell \d+ .*AssertionError: asked to fail"):
        runner.run("tiny", overrides=["FAIL=true"])
    report = (kit_home / "runs" / "tiny" / "report.md").read_text()
    assert "The run failed" in report and "00_first.ipynb | ok" in report
    # --from resumes at the failed notebook
    runner.run("tiny", start="01")
    assert json.loads((kit_home / "runs" / "tiny" / "metrics.json").read_text())["01.seed"] == 7
