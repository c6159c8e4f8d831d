"""The notebook runner on a throwaway project of two tiny notebooks."""

import json
import os
import platform
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
import yaml
from conftest import REPO, write_notebook

from ovkit import cli, results, runner
from ovkit.runner import RunError


@pytest.fixture
def project(kit_home, monkeypatch):
    root = kit_home / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "params").mkdir()
    write_notebook(root / "notebooks" / "00_first.ipynb",
                   "SIZE: int = 1  # size\nSEED: int = 0\nDATA_SOURCE: str = ''",
                   "import ovkit\novkit.record('00.size', SIZE * 10)\novkit.record('00.build_seconds', 0.5)")
    write_notebook(root / "notebooks" / "01_second.ipynb",
                   "SEED: int = 0\nFAIL: bool = False\nVRQ: dict = {}",
                   "import ovkit\nassert not FAIL, 'asked to fail'\novkit.record('01.seed', SEED)")
    (root / "params" / "tiny.yaml").write_text("SIZE: 3\nSEED: 7\nVRQ: {levels: [8, 8], opq_size: 8}\n")
    monkeypatch.setenv("OVKIT_ROOT", str(root))
    return root


def test_discover_reads_parameter_cells(project):
    found = runner.discover()
    assert [nb.number for nb in found] == ["00", "01"]
    assert set(found[1].parameters) == {"SEED", "FAIL", "VRQ"}


def test_unknown_parameter_lists_valid_names(project):
    notebooks = runner.discover()
    expected = r"(?s)'SIZ' \(did you mean 'SIZE'\?\).*Valid parameters: DATA_SOURCE, FAIL, SEED, SIZE, VRQ"
    with pytest.raises(RunError, match=expected):
        runner.validate_parameters({"SIZ": 1}, notebooks, "-p")
    (project / "params" / "typo.yaml").write_text("SEEED: 1\n")
    with pytest.raises(RunError, match="params/typo.yaml"):
        runner.run("typo")


def test_an_unknown_name_and_bad_values_are_reported_together(project, monkeypatch, tmp_path):
    monkeypatch.setenv("OVKIT_SH3D", str(tmp_path / "missing.deb"))
    with pytest.raises(RunError) as raised:
        runner.prepare("tiny", {"SIZ": 1, "SIZE": "abc", "VRQ": {"levels": "x"}}, verbose=False)
    message = str(raised.value)
    for problem in ("'SIZ' (did you mean 'SIZE'?)", "SIZE='abc' (str) should be int", "VRQ: VRQ levels",
                    "OVKIT_SH3D=", "missing.deb does not exist"):
        assert problem in message, problem


def test_relative_sources_are_resolved_once_against_the_shells_directory(project, monkeypatch, tmp_path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "furniture.deb").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OVKIT_SH3D", "furniture.deb")
    values = runner.prepare("tiny", {"DATA_SOURCE": "shop"}, check_data=False, verbose=False)
    assert values["DATA_SOURCE"] == str(tmp_path / "shop")  # the kernels run in notebooks/
    assert os.environ["OVKIT_SH3D"] == str(tmp_path / "furniture.deb")
    assert runner.prepare("tiny", {"DATA_SOURCE": "elsewhere"}, check_data=False,
                          verbose=False)["DATA_SOURCE"] == "elsewhere"  # not here: left for the check to name


def test_unknown_profile_andwrite_notebook(project):
    with pytest.raises(RunError, match="Profiles: tiny"):
        runner.run("nope")
    with pytest.raises(RunError, match="no notebook '05'"):
        runner.run("tiny", only=["05"])


def test_parse_overrides_reads_yaml_values():
    assert runner.parse_overrides(["A=3", "B=0.5", "C={x: 1}", "D=text"]) == {
        "A": 3, "B": 0.5, "C": {"x": 1}, "D": "text"}
    with pytest.raises(RunError, match="key=value"):
        runner.parse_overrides(["A"])


def test_params_hash_is_stable_and_tracks_values():
    a = runner.params_hash({"SIZE": 3, "SEED": 7, "RENDER": {"x": 1, "y": [1, 2]}})
    assert a == runner.params_hash({"RENDER": {"y": [1, 2], "x": 1}, "SEED": 7, "SIZE": 3})
    assert re.fullmatch(r"[0-9a-f]{12}", a)
    assert a != runner.params_hash({"SIZE": 3, "SEED": 8, "RENDER": {"x": 1, "y": [1, 2]}})
    assert a != runner.params_hash({"SIZE": 3, "SEED": 7, "RENDER": {"x": 1, "y": [2, 1]}})  # order of a list


@pytest.mark.slow
def test_full_run_starts_afresh_and_partial_run_keeps_results(project, kit_home, monkeypatch):
    monkeypatch.delenv(results.PARAMS_ENV, raising=False)
    monkeypatch.delenv(results.COMMIT_ENV, raising=False)
    out = kit_home / "runs" / "tiny"
    stale = [out / "metrics" / "09.json", out / "tables" / "09.t.md", out / "figures" / "09.f.png",
             out / "timings.json"]
    kept = [out / "notebooks" / "09_old.ipynb", kit_home / "artifacts" / "stage" / "x"]
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    (out / "metrics" / "09.json").write_text(json.dumps({"09.old": 1}))  # from a kit before provenance

    runner.run("tiny", only=["00"])
    assert all(p.exists() for p in stale + kept)
    assert json.loads((out / "metrics.json").read_text()) == {"00.size": 30, "09.old": 1}
    tiny = {"SIZE": 3, "SEED": 7, "VRQ": {"levels": [8, 8], "opq_size": 8}}
    provenance = {"params": runner.params_hash(tiny),
                  "commit": results.git_commit(project), "profile": "tiny"}
    assert results.load_provenance("tiny") == {"00": provenance, "09": None}
    assert "notebook 09: no provenance" in results.provenance_warning("tiny")

    runner.run("tiny")
    assert not any(p.exists() for p in stale[:-1]) and all(p.exists() for p in kept)
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings["notebooks"]) == {"00_first.ipynb", "01_second.ipynb"}
    assert timings["metrics"] == {"00.build_seconds": 0.5}  # timings live apart from quality metrics
    assert json.loads((out / "metrics.json").read_text()) == {"00.size": 30, "01.seed": 7}
    assert results.provenance_warning("tiny") is None
    assert results.PARAMS_ENV not in os.environ  # the run's variables don't outlive it


@pytest.mark.slow
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


@pytest.mark.slow
def test_failing_notebook_names_notebook_and_cell(project, kit_home):
    with pytest.raises(RunError, match=r"01_second.ipynb failed in cell \d+ .*AssertionError: asked to fail"):
        runner.run("tiny", overrides=["FAIL=true"])
    report = (kit_home / "runs" / "tiny" / "report.md").read_text()
    assert "The run failed" in report and "00_first.ipynb | ok" in report
    # --from resumes at the failed notebook
    runner.run("tiny", start="01")
    assert json.loads((kit_home / "runs" / "tiny" / "metrics.json").read_text())["01.seed"] == 7
    # 00's numbers came from the run with FAIL=true: another parameter set, and the report's caller is told
    text = results.provenance_warning("tiny")
    assert "notebook 00: parameters" in text and "notebook 01: parameters" in text


@pytest.mark.parametrize("override,message", [
    ("SIZE=abc", r"SIZE='abc' \(str\) should be int"),
    ("FAIL=3", r"FAIL=3 \(int\) should be bool"),
    ("VRQ={levels: [8, x]}", r"VRQ: VRQ levels=\[8, 'x'\] is not tuple\[int, ...\]"),
    ("VRQ={levels: [3]}", r"VRQ: VRQ codebook sizes must be powers of two"),
    ("VRQ={levls: [8]}", r"VRQ: unknown VRQ setting\(s\) \['levls'\]"),
    ("VRQ=5", r"VRQ=5 \(int\) should be dict"),
])
def test_bad_values_stop_the_run_before_anywrite_notebook(project, kit_home, override, message):
    with pytest.raises(RunError, match=r"(?s)bad parameter value\(s\):.*" + message):
        runner.run("tiny", overrides=[override])
    assert not (kit_home / "runs" / "tiny" / "notebooks").exists()


def test_all_bad_values_are_listed_at_once(project):
    with pytest.raises(RunError, match=r"(?s)SIZE=.*FAIL="):
        runner.run("tiny", overrides=["SIZE=x", "FAIL=x"])


@pytest.mark.slow
def test_dict_override_merges_into_the_profile(project, kit_home, capsys):
    merged, notes = runner.merge_overrides({"VRQ": {"levels": [8, 8], "opq_size": 8}, "SIZE": 3},
                                           {"VRQ": {"levels": [4]}, "SIZE": 5})
    assert merged == {"VRQ": {"levels": [4], "opq_size": 8}, "SIZE": 5}
    assert notes == ["VRQ: -p ['levels'] merged into the profile's VRQ, which keeps {'opq_size': 8}"]
    runner.run("tiny", only=["00"], overrides=["VRQ={levels: [4, 4]}"])
    assert "which keeps {'opq_size': 8}" in capsys.readouterr().out


def test_bad_dataset_folder_stops_the_run_before_anywrite_notebook(project, kit_home):
    shop = kit_home / "shop"
    shop.mkdir()
    (shop / "images.csv").write_text("path,item_id,kind,split\n")
    expected = r"(?s)DATA_SOURCE=.*shop.*items.csv is missing.*images.csv has a header"
    with pytest.raises(RunError, match=expected):
        runner.run("tiny", overrides=[f"DATA_SOURCE={shop}"])
    assert not (kit_home / "runs" / "tiny" / "notebooks").exists()
    with pytest.raises(RunError, match="does not exist"):
        runner.run("tiny", overrides=[f"DATA_SOURCE={kit_home / 'nowhere'}"])


@pytest.mark.slow
def test_compare_two_runs(project, kit_home, capsys):
    runner.run("tiny")
    first = kit_home / "first"
    shutil.copytree(kit_home / "runs" / "tiny", first)
    runner.run("tiny")
    assert results.compare_runs(first, "tiny") == []
    assert cli.main(["compare", str(first), "tiny"]) == 0
    assert "no metric differs" in capsys.readouterr().out
    runner.run("tiny", overrides=["SIZE=4"])
    assert results.compare_runs(first, "tiny") == [
        {"key": "00.size", "a": 30, "b": 40, "why": "differs by -10"}]
    assert results.compare_runs(first, "tiny", rtol=0.3) == []
    assert cli.main(["compare", str(first), "tiny"]) == 1
    assert "00.size" in capsys.readouterr().out
    assert [d["key"] for d in results.compare_runs(first, "tiny", timings=True)] == ["00.size"]
    assert cli.main(["compare", str(first), "nowhere"]) == 1
    assert "no metrics.json in nowhere" in capsys.readouterr().err


def test_cli_prints_one_error_paragraph(project, capsys):
    assert cli.main(["run", "--profile", "tiny", "-p", "SIZE=abc"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ovkit: error: bad parameter value(s):") and "Traceback" not in err


def test_the_kits_own_notebooks_check_values_before_running():
    notebooks = runner.discover(REPO / "notebooks")
    with pytest.raises(RunError, match=r"(?s)COLOURWAYS='abc' \(str\) should be int.*VRQ: VRQ alpha='x'"):
        runner.check_values({"COLOURWAYS": "abc", "VRQ": {"alpha": "x"}, "N_MODELS": 10}, notebooks)
    for profile in sorted((REPO / "params").glob("*.yaml")):  # the shipped profiles are valid
        runner.check_values(yaml.safe_load(profile.read_text()), notebooks)


def test_pruning_grid_cold_bonuses_and_ranges_are_checked_before_running():
    notebooks = runner.discover(REPO / "notebooks")
    bad = {"REPEATS": 0, "PRUNE_QUERIES": 0, "MAX_LOSS": 1.0, "COLD_BONUSES": [0.1, -0.2],
           "PRUNE_GRID": [{"delta": 2.0}, {"delt": 1.0}, {"tau": 1.5}, {"keep_ratio": "half"}, 0.5],
           "PRUNE_POLICY": '{"token_mass": 0}', "SCALE_GEN": {"beam": 0}, "AB": {"users": 0}}
    with pytest.raises(RunError) as raised:
        runner.check_values(bad, notebooks)
    problems = str(raised.value).splitlines()[1:]  # one line each, all at once
    expected = ["REPEATS=0 must be >= 1", "PRUNE_QUERIES=0 must be >= 1", "MAX_LOSS=1.0 must be in [0, 1)",
                "COLD_BONUSES=[0.1, -0.2] must be a list of finite numbers >= 0",
                "PRUNE_GRID[1]={'delt': 1.0}: unknown PRUNE_GRID[1] setting(s) ['delt']; valid names: keep",
                "PRUNE_GRID[2]={'tau': 1.5}: need delta > 0, 0 < tau <= 1",
                "PRUNE_GRID[3]={'keep_ratio': 'half'}: PRUNE_GRID[3] keep_ratio='half' is not float",
                "PRUNE_GRID[4]=0.5 should be a mapping of pruning settings",
                "PRUNE_POLICY={'token_mass': 0}: keep_ratio and token_mass must be in (0, 1]",
                "SCALE_GEN: GEN beam must be >= 1", "AB: AB users must be >= 1"]
    assert len(problems) == len(expected)
    for line, want in zip(problems, expected, strict=True):
        assert line.startswith("- " + want), (line, want)
    with pytest.raises(RunError, match="PRUNE_POLICY='{delta: 2}' is not JSON"):
        runner.check_values({"PRUNE_POLICY": "{delta: 2}"}, notebooks)
    runner.check_values({"REPEATS": 1, "MAX_LOSS": 0.0, "COLD_BONUSES": [0, 0.5], "PRUNE_GRID": [],
                         "PRUNE_POLICY": '{"delta": 2.0}'}, notebooks)


def test_bad_values_and_a_bad_folder_are_reported_together(project, kit_home):
    shop = kit_home / "shop"
    shop.mkdir()
    (shop / "items.csv").write_text("item_id,category\n")
    with pytest.raises(RunError, match=r"(?s)SIZE='x'.*DATA_SOURCE=.*items.csv has a header but no rows"):
        runner.run("tiny", overrides=["SIZE=x", f"DATA_SOURCE={shop}"])


def test_kernel_defaults_keep_what_the_user_set(monkeypatch):
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "GLIBC_TUNABLES", "NUMPY_MADVISE_HUGEPAGE"):
        monkeypatch.delenv(name, raising=False)
    assert runner.kernel_defaults() == {"GOMP_SPINCOUNT": runner.OMP_SPIN_COUNT,
                                        "GLIBC_TUNABLES": runner.MALLOC_TUNABLES,
                                        "NUMPY_MADVISE_HUGEPAGE": "0"}
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # a policy of the user's own: no spin count
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    assert runner.kernel_defaults() == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2",
                                        "NUMPY_MADVISE_HUGEPAGE": "1"}
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")
    assert "GOMP_SPINCOUNT" not in runner.kernel_defaults()  # kept as the user set it (inherited)


def test_kernels_start_with_numpy_s_huge_pages_off(monkeypatch):
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    ask = "import numpy; print(numpy._core.multiarray._get_madvise_hugepage())"
    env = {**os.environ, **runner.kernel_defaults()}
    child = subprocess.run([sys.executable, "-c", ask], env=env, check=True, capture_output=True, text=True)
    assert child.stdout.strip() == "False"


ALLOCATE_AND_FREE = """
import resource, numpy as np
for _ in range(20):
    block = np.ones(40 << 20, np.uint8)  # 40 MB: above glibc's largest default mmap threshold
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc tunables")
def test_malloc_tunables_stop_large_blocks_faulting_in_again_on_every_allocation():
    def faults(tunables):
        # numpy backs large arrays with 2 MB pages where it can, which hides the count: not here
        env = {**os.environ, "GLIBC_TUNABLES": tunables, "NUMPY_MADVISE_HUGEPAGE": "0"}
        return int(subprocess.run([sys.executable, "-c", ALLOCATE_AND_FREE], env=env, check=True,
                                  capture_output=True, text=True).stdout)

    default, tuned = faults(""), faults(runner.MALLOC_TUNABLES)
    assert default - tuned > 15 * (40 << 20) // 4096  # ≥ 15 of the 20 blocks no longer fault in afresh
