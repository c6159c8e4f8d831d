"""``ovkit sweep``: spec checks, the aggregation maths, the shared cache under concurrent builders, and
sweeps of a tiny notebook on both engines (a failed point, a killed point, resume)."""

import json
import multiprocessing
import time

import pytest
from conftest import REPO, write_notebook

from ovkit import cli, seedstats, store, sweep
from ovkit.runner import RunError

# A point fails when SEED is in FAIL_SEEDS; it kills its own process (the Ray worker running it: the
# kernel's grandparent, as the worker's runner executes each notebook in a child process) when SEED == 1
# and the file KILL_FLAG exists, removing the file first (so once).
BODY = """
import os, psutil, ovkit
if KILL_FLAG and SEED == 1 and os.path.exists(KILL_FLAG):
    os.remove(KILL_FLAG)
    os.kill(psutil.Process(os.getppid()).ppid(), 9)
    os.kill(os.getppid(), 9)
    os.kill(os.getpid(), 9)
assert SEED not in FAIL_SEEDS, 'asked to fail'
ovkit.record('04.hr@10_diff.sft_vs_pretrain', 0.02 + 0.01 * SEED)
ovkit.record('04.hr@10_diff.sft_vs_pretrain_ci_low', 0.01 + 0.01 * SEED)
ovkit.record('04.hr@10_diff.sft_vs_pretrain_ci_high', 0.03 + 0.01 * SEED)
ovkit.record('04.policy', 'delta')
ovkit.record('04.scale', SCALE)
"""


@pytest.fixture
def project(kit_home, monkeypatch):
    root = kit_home / "project"
    for sub in ("notebooks", "params", "sweeps"):
        (root / sub).mkdir(parents=True)
    write_notebook(root / "notebooks" / "04_tiny.ipynb",
              "SEED: int = 0\nSCALE: int = 1\nFAIL_SEEDS: list = []\nKILL_FLAG: str = ''\nGEN: dict = {}",
              BODY)
    (root / "params" / "tiny.yaml").write_text("SCALE: 2\n")
    (root / "sweeps" / "two.yaml").write_text("profile: tiny\nseeds: [0, 1]\n")
    monkeypatch.setenv("OVKIT_ROOT", str(root))
    return root


# --- spec ----------------------------------------------------------------------------------------------


def test_spec_grid_times_seeds(project):
    path = project / "sweeps" / "grid.yaml"
    path.write_text("profile: tiny\nseeds: 2\ngrid: {SCALE: [1, 3], GEN: [{dpo: listwise}]}\n")
    spec = sweep.load_spec(path, overrides=["FAIL_SEEDS=[]"])
    assert spec.name == "grid-tiny" and spec.seeds == [0, 1]
    points = spec.points()
    assert [p.id for p in points] == ["SCALE=1,GEN.dpo=listwise_seed-0", "SCALE=1,GEN.dpo=listwise_seed-1",
                                      "SCALE=3,GEN.dpo=listwise_seed-0", "SCALE=3,GEN.dpo=listwise_seed-1"]
    assert points[3].overrides == {"FAIL_SEEDS": [], "SCALE": 3, "GEN": {"dpo": "listwise", "seed": 1000},
                                   "SEED": 1}  # every declared component seeded from the point's seed
    assert sweep.load_spec("two", profile="other").name == "two-other"  # a name in sweeps/, --profile wins


@pytest.mark.parametrize("text, message", [
    ("profile: tiny\nseed: [1]\n", r"unknown key\(s\).*'seed' \(did you mean 'seeds'\?\).*Valid keys"),
    ("seeds: [0]\n", "names no profile"),
    ("profile: tiny\nseeds: [0, 0]\n", "distinct integers"),
    ("profile: tiny\nseeds: []\n", "non-empty list"),
    ("profile: tiny\ngrid: {SCALE: 3}\n", "non-empty lists"),
    ("profile: tiny\ngrid: {SEED: [1, 2]}\n", "set seeds with the 'seeds' key"),
    ("profile: tiny\nnotebooks: ['05']\n", "no notebook '05'; notebooks: 04"),
    ("profile: tiny\nnotebooks: [4]\n", "list of notebook numbers as strings"),
])
def test_bad_spec_is_refused_before_anything_runs(project, text, message):
    (project / "sweeps" / "bad.yaml").write_text(text)
    with pytest.raises(RunError, match=message):
        sweep.load_spec(project / "sweeps" / "bad.yaml")


def test_unknown_parameter_in_grid_lists_valid_names(project, kit_home):
    (project / "sweeps" / "bad.yaml").write_text("profile: tiny\ngrid: {SCAEL: [1, 2]}\n")
    with pytest.raises(RunError, match=r"(?s)'SCAEL' \(did you mean 'SCALE'\?\).*Valid parameters: FAIL_"):
        sweep.run(project / "sweeps" / "bad.yaml", engine="local")
    assert not (kit_home / "runs" / "bad-tiny").exists()
    with pytest.raises(RunError, match="should be int"):
        sweep.run("two", overrides=["SCALE=big"], engine="local")
    with pytest.raises(RunError, match="no sweep spec nope"):
        sweep.run("nope")


def test_cli_reports_a_bad_spec(project, capsys):
    assert cli.main(["sweep", "nope", "--engine", "local"]) == 1
    assert "no sweep spec nope" in capsys.readouterr().err


# --- aggregation maths ---------------------------------------------------------------------------------


def _build_stage(counter: str, barrier, keys) -> None:
    barrier.wait()  # both processes ask for the stage at the same moment

    def build(folder):
        with open(counter, "a") as f:
            f.write("built\n")
        time.sleep(1.0)
        (folder / "x.npy").write_bytes(b"\x93NUMPY")

    keys.put(store.cached("shared", {"n": 1}, build).key)


def test_two_concurrent_builders_build_a_stage_once(kit_home):
    counter = kit_home / "builds.txt"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    queue = ctx.Queue()
    builders = [ctx.Process(target=_build_stage, args=(str(counter), barrier, queue)) for _ in range(2)]
    for p in builders:
        p.start()
    keys = [queue.get(timeout=60) for _ in builders]
    for p in builders:
        p.join(timeout=60)
    assert [p.exitcode for p in builders] == [0, 0] and keys[0] == keys[1]
    assert counter.read_text().splitlines() == ["built"]  # the second builder waited and read the first's
    artifact = store.lookup("shared", {"n": 1})
    assert artifact is not None and (artifact / "x.npy").read_bytes() == b"\x93NUMPY"
    assert not list((kit_home / "artifacts" / "shared").glob(".tmp-*"))


# --- sweeps of a tiny notebook -------------------------------------------------------------------------


@pytest.mark.slow
def test_local_sweep_reports_a_failed_point_and_resumes(project, kit_home, capsys):
    with pytest.raises(RunError, match=r"1 of 2 points failed \(seed-1\)"):
        sweep.run("two", overrides=["FAIL_SEEDS=[1]"], engine="local")
    out = capsys.readouterr().out
    assert "✓ seed-0" in out and "✗ seed-1 failed: notebook 04_tiny.ipynb failed in cell" in out
    folder = kit_home / "runs" / "two-tiny"
    assert json.loads((folder / "seed-0" / "metrics.json").read_text())["04.scale"] == 2
    assert (folder / "seed-0" / "notebooks" / "04_tiny.ipynb").exists()
    assert (folder / "seed-0" / "report.md").exists()
    summary = seedstats.load("two-tiny")
    assert summary["seeds.n"] == 1 and summary["points"]["seed-1"]["status"] == "failed"

    first = (folder / "seed-0" / "status.json").read_text()
    path = sweep.run("two", overrides=["FAIL_SEEDS=[2]"], engine="local")  # new parameters: both run again
    assert (folder / "seed-0" / "status.json").read_text() != first
    out = capsys.readouterr().out
    assert "0 finished earlier, 2 to run" in out
    sweep.run("two", overrides=["FAIL_SEEDS=[2]"], engine="local")
    assert "2 finished earlier, 0 to run" in capsys.readouterr().out
    summary = seedstats.load(folder)
    assert summary["seeds.n"] == 2
    assert summary["seeds.04.hr@10_diff.sft_vs_pretrain.mean"] == pytest.approx(0.025)
    assert summary["seeds.04.scale.ci_low"] == 2 and summary["seeds.04.hr@10_diff.sft_vs_pretrain.verdict"]
    assert "## Across seeds" in path.read_text() and (folder / "figures" / "seeds.png").exists()
    sweep.write_summary(sweep.load_spec("two", overrides=["FAIL_SEEDS=[2]"]))  # a rewrite by newer code
    assert seedstats.load(folder)["last_call"]["engine"] == "local"
    assert "| 04.scale | 2 | 2.0000 |" in path.read_text()  # n is a count


@pytest.mark.slow
def test_a_sweep_of_some_notebooks_runs_only_those(project, kit_home, capsys):
    write_notebook(project / "notebooks" / "05_after.ipynb", "SEED: int = 0",
                   "import ovkit\novkit.record('05.ran', 1)")
    (project / "sweeps" / "only.yaml").write_text("profile: tiny\nseeds: [0, 1]\nnotebooks: ['04']\n")
    path = sweep.run("only", engine="local")
    folder = kit_home / "runs" / "only-tiny"
    metrics = json.loads((folder / "seed-1" / "metrics.json").read_text())
    assert metrics["04.scale"] == 2 and "05.ran" not in metrics
    assert not (folder / "seed-1" / "notebooks" / "05_after.ipynb").exists()
    assert "notebooks 04 only" in capsys.readouterr().out and "notebooks 04 only" in path.read_text()
    (project / "sweeps" / "only.yaml").write_text("profile: tiny\nseeds: [0, 1]\n")
    sweep.run("only", engine="local")  # now every notebook: the points that ran 04 alone run again
    assert "0 finished earlier, 2 to run" in capsys.readouterr().out
    assert json.loads((folder / "seed-1" / "metrics.json").read_text())["05.ran"] == 1


@pytest.mark.slow
def test_ovkit_sweep_track_leaves_a_parent_run_with_a_child_per_point(project, kit_home, monkeypatch, capsys):
    mlflow = pytest.importorskip("mlflow", reason="the track extra (pip install -e '.[track]')")
    from ovkit import track

    uri = f"sqlite:///{kit_home / 'mlflow.db'}"
    monkeypatch.setenv(track.TRACKING_ENV, uri)  # as a user would point the kit at a store
    assert cli.main(["sweep", "two", "--engine", "local"]) == 0
    assert "MLflow: sweep run" in capsys.readouterr().out
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[track.EXPERIMENT])
    parent = runs[runs["tags.mlflow.runName"] == "two-tiny"]
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]]
    assert len(parent) == 1 and len(children) == 2
    for _, child in children.iterrows():
        point = kit_home / "runs" / "two-tiny" / child["tags.mlflow.runName"].split("/")[-1]
        metrics = json.loads((point / "metrics.json").read_text())
        for key, value in metrics.items():
            if not isinstance(value, str):
                assert child[f"metrics.{track.mlflow_key(key)}"] == value, key
        assert child["params.SCALE"] == "2" and child["params.SEED"] == point.name.split("-")[1]


@pytest.mark.slow
def test_ray_sweep_survives_a_killed_point_and_resumes(project, kit_home, capsys):
    pytest.importorskip("ray")
    flag = kit_home / "kill-once"
    flag.touch()
    overrides = [f"KILL_FLAG={flag}"]
    with pytest.raises(RunError, match=r"1 of 2 points failed \(seed-1\)"):
        sweep.run("two", overrides=overrides, engine="ray", cpus_per_run=1)
    out = capsys.readouterr().out
    assert "✓ seed-0" in out and "✗ seed-1 failed: the point's process died" in out
    assert not flag.exists()  # the point really ran and killed its process
    status = json.loads((kit_home / "runs" / "two-tiny" / "seed-1" / "status.json").read_text())
    assert status["status"] == "failed"

    sweep.run("two", overrides=overrides, engine="ray", cpus_per_run=1)  # resume: only the failed point
    assert "1 finished earlier, 1 to run" in capsys.readouterr().out
    summary = seedstats.load("two-tiny")
    assert summary["seeds.n"] == 2 and summary["last_call"]["engine"] == "ray"
    assert {p["status"] for p in summary["points"].values()} == {"ok"}


def test_summary_warns_when_points_ran_different_code():
    point = {"cell": seedstats.BASE_CELL, "status": "ok", "seconds": 60.0, "metrics": {}}
    summary = {"sweep": "s-tiny", "profile": "tiny", "seeds": [0, 1], "grid": {}, "parameters": {},
               "points": {"seed-0": {**point, "seed": 0, "commit": "abc1234"},
                          "seed-1": {**point, "seed": 1, "commit": "def5678"}},
               "cells": {seedstats.BASE_CELL: {"points": []}}}
    assert "ran different code (commits abc1234, def5678)" in sweep.summary_markdown(summary)
    summary["points"]["seed-1"]["commit"] = "abc1234"
    text = sweep.summary_markdown(summary)
    assert "Warning" not in text and "Code: commit abc1234." in text


@pytest.mark.parametrize("spec", sorted(p.name for p in (REPO / "sweeps").glob("*.yaml")))
def test_shipped_specs_are_valid_for_the_real_notebooks(spec, monkeypatch):
    monkeypatch.setenv("OVKIT_ROOT", str(REPO))
    loaded = sweep.load_spec(REPO / "sweeps" / spec, profile="smoke")
    values = sweep.validate(loaded)
    seeds_used = {*loaded.seeds, loaded.base.get("SEED", 0)}  # with vary, unvaried data keeps the profile's
    assert len(values) >= 2 and all(v["SEED"] in seeds_used for v in values.values())


def test_ray_engine_without_ray_or_cluster_says_what_to_do(project, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert sweep.default_engine() == "local"
    with pytest.raises(RunError, match=r"--engine ray needs Ray: pip install -e '.\[sweep\]'"):
        sweep.run("two", engine="ray")


def test_an_unreachable_ray_address_fails_at_once_with_the_fix():
    started = time.perf_counter()
    with pytest.raises(RunError, match=r"no Ray cluster at --address 127.0.0.1:9 .*ray start --head"):
        sweep.check_address("127.0.0.1:9", timeout=1)
    assert time.perf_counter() - started < 5
    for address in (None, "auto"):
        sweep.check_address(address)  # local Ray, or Ray's own discovery: nothing to check here

