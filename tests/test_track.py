"""Runs and sweeps in MLflow, read back with mlflow's own search API and compared with the run folders."""

import json
import sys

import pytest

from ovkit import track
from ovkit.runner import RunError

mlflow = pytest.importorskip("mlflow", reason="the track extra (pip install -e '.[track]')")

PARAMS = {
    "N_MODELS": 3,
    "DATA_SOURCE": "",
    "GEN": {"beam": 10, "pretrain_steps": 2},
    "VRQ": {"levels": [4, 4]},
    "SIM": {},
}


def _run_folder(folder, seed=0):
    (folder / "metrics").mkdir(parents=True)
    (folder / "notebooks").mkdir()
    (folder / "figures").mkdir()
    metrics = {
        "01.recall@1.aligned": 0.25 + seed,
        "02.icr.vrq": 0.9,
        "04.reference_mca": "mca_fused",
        "05.best_policy": "delta",
        "00.n_skus": 120,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "metrics" / "01.json").write_text(
        json.dumps(
            {"01.recall@1.aligned": metrics["01.recall@1.aligned"], "_provenance": {"commit": "abc1234"}}
        )
    )
    (folder / "timings.json").write_text(
        json.dumps(
            {
                "notebooks": {"01_x.ipynb": {"seconds": 12.5, "status": "ok"}},
                "metrics": {"04.latency_ms.mca": 3.0},
            }
        )
    )
    (folder / "resources.json").write_text(
        json.dumps({"notebooks": {"01_x.ipynb": {"user_s": 10.0, "peak_rss_gb": 1.5}}})
    )
    (folder / "params.json").write_text(json.dumps({**PARAMS, "SEED": seed}))
    (folder / "report.md").write_text("# report\n")
    (folder / "notebooks" / "01_x.ipynb").write_text("{}")
    (folder / "figures" / "01.png").write_bytes(b"\x89PNG")
    return metrics


def test_flatten_and_keys_by_hand():
    assert track.flatten({"A": 1, "GEN": {"beam": 10, "levels": [4, 4]}, "S": "x", "E": {}}) == {
        "A": "1",
        "GEN.beam": "10",
        "GEN.levels": "[4, 4]",
        "S": "x",
        "E": "{}",
    }
    assert track.mlflow_key("04.hr@10_rel_diff.dpo_vs_mca") == "04.hr_at_10_rel_diff.dpo_vs_mca"


def test_a_run_is_logged_with_every_parameter_metric_timing_and_artifact(tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # MLflow's default artifact root is ./mlruns: not here
    folder = tmp_path / "runs" / "smoke"
    metrics = _run_folder(folder)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = track.log_run(folder, "smoke", uri=uri)
    mlflow.set_tracking_uri(uri)
    run = mlflow.get_run(run_id)
    numeric = {track.mlflow_key(k): v for k, v in metrics.items() if not isinstance(v, str)}
    assert {
        k: v for k, v in run.data.metrics.items() if not k.startswith(("timing.", "resources."))
    } == numeric
    assert run.data.metrics["timing.04.latency_ms.mca"] == 3.0
    assert run.data.metrics["timing.notebook_seconds.01_x.ipynb"] == 12.5
    assert run.data.metrics["resources.01_x.ipynb.peak_rss_gb"] == 1.5
    assert run.data.params == {
        "N_MODELS": "3",
        "DATA_SOURCE": "",
        "GEN.beam": "10",
        "GEN.pretrain_steps": "2",
        "VRQ.levels": "[4, 4]",
        "SIM": "{}",
        "SEED": "0",
    }
    assert (
        run.data.tags["metric.04.reference_mca"] == "mca_fused" and run.data.tags["ovkit.commit"] == "abc1234"
    )
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    assert {"report.md", "params.json", "notebooks", "figures"} <= artifacts
    assert not (tmp_path / "cwd" / "mlruns").exists() and any((tmp_path / "mlartifacts").rglob("report.md"))
    found = mlflow.search_runs(
        experiment_names=[track.EXPERIMENT], filter_string="tags.`ovkit.commit` = 'abc1234'"
    )
    assert list(found["run_id"]) == [run_id]


def test_a_sweep_is_a_parent_run_with_one_child_per_finished_point(tmp_path):
    folder = tmp_path / "runs" / "seeds-smoke"
    points, expected = {}, {}
    for seed in range(3):
        expected[f"seed-{seed}"] = _run_folder(folder / f"seed-{seed}", seed)
        points[f"seed-{seed}"] = {"cell": "base", "seed": seed, "status": "ok"}
    points["seed-3"] = {"cell": "base", "seed": 3, "status": "failed"}  # not logged
    summary = {
        "sweep": "seeds-smoke",
        "profile": "smoke",
        "seeds": [0, 1, 2, 3],
        "grid": {},
        "vary": ["world"],
        "points": points,
        "seeds.n": 3,
        "seeds.01.recall@1.aligned.mean": 1.25,
        "seeds.01.recall@1.aligned.verdict": "reproduced",
    }
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = track.log_sweep(
        folder, summary, {p: {**PARAMS, "SEED": i} for i, p in enumerate(points)}, uri=uri
    )
    mlflow.set_tracking_uri(uri)
    assert mlflow.get_run(parent).data.metrics == {"seeds.n": 3, "seeds.01.recall_at_1.aligned.mean": 1.25}
    children = mlflow.search_runs(
        experiment_names=[track.EXPERIMENT], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert len(children) == 3
    for _, child in children.iterrows():
        point = child["tags.mlflow.runName"].split("/")[-1]
        for key, value in expected[point].items():
            if not isinstance(value, str):
                assert child[f"metrics.{track.mlflow_key(key)}"] == value
        assert child["params.SEED"] == point.split("-")[1]


def test_without_mlflow_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(RunError, match=r"pip install -e '.\[track\]'"):
        track.require()
