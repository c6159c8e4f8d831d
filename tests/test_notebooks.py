"""Static checks of the notebooks: the parameters cell parses completely and follows the template."""

import ast
from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


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
    for line in _parameters_cell(nb).source.splitlines():
        if line and not line.startswith("#"):
            assert "#" in line, f"parameter without a comment: {line}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") is not None for c in code)
    assert any(c.get("outputs") for c in code), "commit the notebook with the outputs of a smoke run"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert any("ovkit.record(" in c.source for c in code), "a notebook records its results"
