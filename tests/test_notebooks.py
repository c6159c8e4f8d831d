"""Static checks of the notebooks: the template, the shared parameter block, nbval markers, lint."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell must be tagged 'parameters'"
    return cells[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    cell = _parameters_cell(nbformat.read(path, 4))
    assigned = {node.target.id if isinstance(node, ast.AnnAssign) else node.targets[0].id
                for node in ast.parse(cell.source).body if isinstance(node, (ast.Assign, ast.AnnAssign))}
    # papermill skips a line with two '=' (e.g. one in the comment): the runner would then reject the name
    assert set(papermill.inspect_notebook(str(path))) == assigned


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_template(path):
    nb = nbformat.read(path, 4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for name, spec in papermill.inspect_notebook(str(path)).items():
        assert spec["help"], f"parameter {name} has no comment"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") is not None for c in code)
    assert any(c.get("outputs") for c in code), "commit the notebook with the outputs of a smoke run"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert any("ovkit.record(" in c.source for c in code), "a notebook records its results"


def test_shared_parameters_are_declared_identically():
    """A name declared in several notebooks has the same type and default in all of them (the runner
    hands one value to every notebook), and every notebook opens with notebook 00's catalogue block,
    line for line (so each can rebuild what it needs)."""
    seen = {}
    for path in NOTEBOOKS:
        for name, spec in papermill.inspect_notebook(str(path)).items():
            declared = (spec["inferred_type_name"], spec["default"])
            seen.setdefault(name, {}).setdefault(declared, []).append(path.name)
    differing = {name: variants for name, variants in seen.items() if len(variants) > 1}
    assert not differing, f"parameters declared differently: {differing}"

    def lines(path):
        return _parameters_cell(nbformat.read(path, 4)).source.splitlines()

    block = lines(NOTEBOOKS[0])
    for path in NOTEBOOKS[1:]:
        assert lines(path)[: len(block)] == block, f"{path.name} does not open with notebook 00's parameters"


def test_notebook_defaults_are_the_smoke_profile():
    smoke = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    defaults = {}
    for path in NOTEBOOKS:
        for name, spec in papermill.inspect_notebook(str(path)).items():
            defaults[name] = ast.literal_eval(spec["default"])
    mismatched = {name: (defaults.get(name), value) for name, value in smoke.items()
                  if defaults.get(name) != value}
    assert not mismatched, f"notebook default vs params/smoke.yaml: {mismatched}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_nbval_markers_start_their_line(path):
    """nbval only honours a marker written as its own '# NBVAL_…' line."""
    for cell in nbformat.read(path, 4).cells:
        for line in cell.source.splitlines() if cell.cell_type == "code" else []:
            if "NBVAL_" in line:
                assert re.fullmatch(r"# NBVAL_(IGNORE_OUTPUT|CHECK_OUTPUT|SKIP|RAISES_EXCEPTION)", line), line


def test_ruff_lints_the_notebooks():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "notebooks"], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_settings_dicts_are_seeded_from_seed_before_use(path):
    """A settings dict of a random component that a notebook reads (other than through
    ``pipeline.load(globals())``) is first reassigned from ``seeds.seeded(NAME, ...)``, so ``SEED``
    reaches every random component."""
    from ovkit.seeds import COMPONENTS

    nb = nbformat.read(path, 4)
    declared = papermill.inspect_notebook(str(path))
    names = [n for n in (*COMPONENTS, "SCALE_GEN", "SCALE_VRQ") if n in declared]
    seeded = set()
    for cell in nb.cells:
        if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
            continue
        for stmt in ast.parse(cell.source).body:
            calls = [n for n in ast.walk(stmt)
                     if isinstance(n, ast.Call) and ast.unparse(n.func) == "seeds.seeded"]
            seeded |= {c.args[0].id for c in calls if isinstance(stmt, ast.Assign)}
            read = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            for name in names:
                assert name not in read or name in seeded, f"{path.name} reads {name} before seeds.seeded"
