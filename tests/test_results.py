import ast
import itertools
import json
import subprocess
from pathlib import Path

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


# --------------------------------------------------------------------------- quality vs timing

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# Every timing/resource key the notebooks record (f-string fields that are no literal loop's: "x");
# the interval suffixes follow their estimate. A new timing key goes here, once is_timing agrees.
TIMING_KEYS = {
    "00.build_seconds", "00.load_seconds", "01.train_seconds", "04.train_seconds.x",
    *(f"03.latency_ms.{p}.{s}" for p in ("p50", "p95") for s in ("mca", "recall", "prerank", "rank")),
    "04.latency_ms.p50.mca", "04.latency_ms.p50.onevision", "04.latency_ms.onevision_batched",
    "04.speed_ratio.mca_over_onevision", "04.speed_ratio_total.mca_over_onevision",
    *(f"05.latency_ms.p50.{s}" for s in ("mca", "pruned", "unpruned")),
    *(f"05.{r}.mca_over_{s}" for r in ("speed_ratio", "speed_ratio_total") for s in ("pruned", "unpruned")),
    "05.speedup_at_1pct", "05.speedup_total_at_1pct",
    "05.val_speedup_at_best", "05.val_speedup_total_at_best",
    "07.beam_b1_ms", "07.beam_b1_exact_prior_ms", "07.vrq_fit_s", "07.vrq_peak_gb", "07.trie_mb",
}


def _loop_values(node: ast.For, env: dict) -> dict:
    """``env`` with the loop's variables bound to the values a literal loop gives them (else None)."""
    env = dict(env)
    try:
        values = ast.literal_eval(node.iter)
    except ValueError:
        values = None
    targets = node.target.elts if isinstance(node.target, ast.Tuple) else [node.target]
    for pos, target in enumerate(t for t in targets if isinstance(t, ast.Name)):
        unpack = isinstance(node.target, ast.Tuple)
        env[target.id] = None if values is None else [v[pos] if unpack else v for v in values]
    return env


def _expand(key: ast.expr, env: dict) -> list:
    """The keys a (formatted) string literal stands for."""
    if isinstance(key, ast.Constant):
        return [key.value]
    parts = [[p.value] if isinstance(p, ast.Constant) else
             [str(v) for v in env.get(getattr(p.value, "id", None)) or ["x"]] for p in key.values]
    return ["".join(p) for p in itertools.product(*parts)]


def _recorded(node: ast.AST, env: dict, out: set) -> None:
    if isinstance(node, ast.For):
        env = _loop_values(node, env)
    name = getattr(node, "func", None) and getattr(node.func, "attr", getattr(node.func, "id", None))
    if name in ("record", "record_interval") and isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
        for key in _expand(node.args[0], env):
            out.update(results.interval_keys(key) if name == "record_interval" else [key])
    for child in ast.iter_child_nodes(node):
        _recorded(child, env, out)


def notebook_keys() -> set:
    """Every metric key the notebooks' code cells record (``record``/``record_interval`` calls)."""
    keys = set()
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            lines = "".join(cell["source"]).splitlines() if cell["cell_type"] == "code" else []
            source = "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))
            _recorded(ast.parse(source), {}, keys)
    return keys


def test_every_time_and_memory_key_the_notebooks_record_is_a_timing():
    keys = notebook_keys()
    assert {k[:2] for k in keys} >= {"00", "01", "02", "03", "04", "05", "06", "07"} and len(keys) > 100
    for key in sorted(keys):
        base = key.removesuffix("_ci_low").removesuffix("_ci_high")
        assert results.is_timing(key) == (base in TIMING_KEYS), \
            f"{key}: {'timing' if results.is_timing(key) else 'quality'} (a new timing key? see TIMING_KEYS)"
    # whole words only: an "s" or "mb" inside a word marks nothing
    assert not any(map(results.is_timing, ["00.n_skus", "02.mse.vrq", "03.hr@10.mca_fused", "06.ab_users"]))
