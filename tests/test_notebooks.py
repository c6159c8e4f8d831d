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
OWN_CATALOGUE = {"07_at_scale.ipynb"}  # builds a synthetic catalogue: reads none of the catalogue block
MAX_LOGIC_LINES = 15  # a longer cell belongs in ovkit (DESIGN §3), record cells excepted


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
        if path.name in OWN_CATALOGUE:  # of the block, only the seed applies to a synthetic catalogue
            assert set(papermill.inspect_notebook(str(path))) & set(seen) >= {"SEED"}
            assert not {"N_MODELS", "DATA_SOURCE"} & set(papermill.inspect_notebook(str(path)))
            continue
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


def _code_cells(path):
    """(index, source) of the code cells other than the parameters cell."""
    return [(i, c.source) for i, c in enumerate(nbformat.read(path, 4).cells)
            if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]


def _logic_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


def _records(source: str) -> bool:
    """A record cell: at least half its statements record results (``ovkit.record*``)."""
    body = ast.parse(source).body
    calls = [n for n in ast.walk(ast.Module(body, [])) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and n.func.attr.startswith("record")]
    return len(calls) >= len(body) / 2


def _bound(node) -> set:
    """Names a statement binds: assignments, loop targets, function and lambda arguments."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)} | {
        n.arg for n in ast.walk(node) if isinstance(n, ast.arg)}


def _loop_bound(node) -> set:
    """Names a loop binds: its target and every name its body assigns (outside functions)."""
    loops = [n for n in ast.walk(node) if isinstance(n, ast.For)]
    return set().union(*(_bound(n.target) | {x for s in n.body for x in _bound(s)} for n in loops))


def loop_variables_read_after_their_loop(cells) -> list:
    """(cell, name, loop cell) for each top-level read of a name that a finished loop bound and no
    statement since has bound again: the reader gets whatever the last iteration left."""
    left, found = {}, []
    for i, source in cells:
        for stmt in ast.parse(source).body:
            if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
                continue
            loads = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            found += [(i, name, left[name]) for name in sorted((loads & set(left)) - _bound(stmt))]
            for name in _bound(stmt) - _loop_bound(stmt):
                left.pop(name, None)
            left.update(dict.fromkeys(_loop_bound(stmt), i))
    return found


def test_the_loop_variable_check_finds_a_leftover_and_accepts_a_rebinding():
    leftover = [(1, "for name, lists in ranked.items():\n    queries = make(name)\n"), (2, "search(queries)")]
    assert loop_variables_read_after_their_loop(leftover) == [(2, "queries", 1)]
    rebound = [(1, "for name in names:\n    q = make(name)\n"), (2, "q = make('dpo')\nsearch(q)"),
               (3, "f = lambda name: name")]
    assert loop_variables_read_after_their_loop(rebound) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_notebook_reads_a_loop_variable_after_its_loop(path):
    assert loop_variables_read_after_their_loop(_code_cells(path)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_code_cells_are_short(path):
    long = {i: _logic_lines(source) for i, source in _code_cells(path)
            if _logic_lines(source) > MAX_LOGIC_LINES and not _records(source)}
    assert not long, f"cells over {MAX_LOGIC_LINES} logic lines (move the logic into ovkit): {long}"


MACHINE_PATH = re.compile(r"(/work/|/root/|/home/|/tmp/|/Users/|site-packages|[A-Z]:\\\\)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_carry_no_machine_paths(path):
    """Warnings and messages name the kit, not the files of the machine that ran the notebook."""
    texts = [o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
             for c in nbformat.read(path, 4).cells if c.cell_type == "code" for o in c.outputs]
    found = [MACHINE_PATH.search(t).group(0) for t in texts if MACHINE_PATH.search(t)]
    assert not found, f"machine paths in the outputs: {found}"
