"""Runs and sweeps in MLflow (optional extra ``track``: ``pip install -e '.[track]'``).

``ovkit run --track`` logs a finished run as one MLflow run: every parameter (settings dicts
flattened to ``GEN.pretrain_steps``), every quality metric of ``metrics.json``, the timings and
resources as metrics of their own (``timing.*``, ``resources.*``), text metrics (a chosen policy) as
tags, the git commit as a tag, and ``report.md``, the executed notebooks and the figures as
artifacts. ``ovkit sweep --track`` logs the sweep as a parent run (the pooled ``seeds.*`` records of
its summary) with one child run per finished point.

The store is ``OVKIT_TRACKING_URI`` when set (a server, ``http://host:5000``), else a local SQLite
file, ``runs/mlflow.db``: ``make ui`` opens ``mlflow ui`` on it. MLflow names may not hold ``@``,
so ``hr@10`` is logged as ``hr_at_10`` (:func:`mlflow_key`); everything else keeps its key.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from . import resources
from .paths import runs_dir
from .results import read_timings, run_commits
from .runner import RunError

TRACKING_ENV = "OVKIT_TRACKING_URI"
EXPERIMENT = "ovkit"


def require():
    """MLflow, or a RunError saying how to install it (checked before a run starts, not after)."""
    try:
        import mlflow
    except ImportError as err:
        raise RunError("--track needs MLflow: pip install -e '.[track]' (make ui installs it)") from err
    return mlflow


def default_uri() -> str:
    """``OVKIT_TRACKING_URI``, else ``sqlite:///<runs>/mlflow.db``."""
    return os.environ.get(TRACKING_ENV) or f"sqlite:///{runs_dir() / 'mlflow.db'}"


def _experiment(mlflow, uri: str) -> str:
    """The ``ovkit`` experiment's id in store ``uri``, created with its artifacts beside a local SQLite
    store (``runs/mlartifacts``; MLflow's own default is ``./mlruns`` under whatever directory the
    command ran in)."""
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    return mlflow.create_experiment(EXPERIMENT, artifact_location=location)


def mlflow_key(key: str) -> str:
    """A metric or parameter key as MLflow accepts it (``@`` is not allowed: ``hr@10`` → ``hr_at_10``)."""
    return key.replace("@", "_at_")


def flatten(values: dict, prefix: str = "") -> dict:
    """Nested settings as flat ``NAME.field`` → text (lists and other values as JSON)."""
    out = {}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{key}."))
        else:
            out[key] = value if isinstance(value, str) else json.dumps(value, default=str)
    return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def run_records(folder: Path, params: dict | None = None) -> dict:
    """What :func:`log_run` logs for a run folder: ``params``, ``metrics``, ``tags``, ``artifacts``."""
    folder = Path(folder)
    metrics_file = folder / "metrics.json"
    if not metrics_file.exists():
        raise FileNotFoundError(f"no metrics.json in {folder}: track a run folder that 'ovkit run' wrote")
    quality = json.loads(metrics_file.read_text())
    if params is None and (folder / "params.json").exists():
        params = json.loads((folder / "params.json").read_text())
    timings = read_timings(folder)
    metrics = {k: v for k, v in quality.items() if _number(v)}
    metrics |= {f"timing.{k}": v for k, v in timings["metrics"].items() if _number(v)}
    metrics |= {f"timing.notebook_seconds.{nb}": entry["seconds"]
                for nb, entry in timings["notebooks"].items() if _number(entry.get("seconds"))}
    for nb, used in resources.read(folder).get("notebooks", {}).items():
        metrics |= {f"resources.{nb}.{k}": v for k, v in used.items() if _number(v)}
    tags = {f"metric.{k}": str(v) for k, v in quality.items() if isinstance(v, str)}
    commits = [c for c in run_commits(str(folder)) if c != "?"]  # an absolute folder: any run
    if commits:
        tags["ovkit.commit"] = ",".join(commits)
    artifacts = [p for p in (folder / "report.md", folder / "params.json") if p.exists()]
    artifacts += sorted((folder / "notebooks").glob("*.ipynb")) + sorted((folder / "figures").glob("*.png"))
    return {"params": flatten(params or {}), "metrics": metrics, "tags": tags, "artifacts": artifacts}


def log_run(folder: Path, name: str, params: dict | None = None, parent: str | None = None,
            uri: str | None = None, tags: dict | None = None) -> str:
    """Log one run folder as an MLflow run (a child of run id ``parent`` if given); returns its run id."""
    mlflow = require()
    records = run_records(folder, params)
    experiment = _experiment(mlflow, uri or default_uri())
    run_tags = {**records["tags"], **(tags or {}), "ovkit.folder": str(Path(folder).resolve())}
    if parent:
        run_tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(experiment_id=experiment, run_name=name, tags=run_tags) as run:
        mlflow.log_params({mlflow_key(k): v for k, v in records["params"].items()})
        mlflow.log_metrics({mlflow_key(k): v for k, v in records["metrics"].items()})
        for path in records["artifacts"]:  # report.md at the top, notebooks/ and figures/ as in the folder
            inside = path.parent.resolve() != Path(folder).resolve()
            mlflow.log_artifact(str(path), artifact_path=path.parent.name if inside else None)
    return run.info.run_id


def log_sweep(folder: Path, summary: dict, points: dict, uri: str | None = None) -> str:
    """A sweep as a parent run (its pooled ``seeds.*`` records) with one child per finished point.

    ``points``: point id → its parameters (the sweep's own record of what each point ran with).
    """
    mlflow = require()
    experiment = _experiment(mlflow, uri or default_uri())
    records = {k: v for k, v in summary.items() if k.startswith("seeds.")}
    pooled = {k: v for k, v in records.items() if _number(v)}
    verdicts = {f"verdict.{k}": v for k, v in records.items() if isinstance(v, str)}
    tags = {"ovkit.sweep": summary["sweep"], "ovkit.profile": summary["profile"], **verdicts}
    with mlflow.start_run(experiment_id=experiment, run_name=summary["sweep"], tags=tags) as parent:
        mlflow.log_params({"seeds": json.dumps(summary["seeds"]), "vary": json.dumps(summary.get("vary", [])),
                           "grid": json.dumps(summary["grid"], default=str)})
        mlflow.log_metrics({mlflow_key(k): v for k, v in pooled.items()})
        if (Path(folder) / "summary.md").exists():
            mlflow.log_artifact(str(Path(folder) / "summary.md"))
    for pid, point in summary["points"].items():
        if point.get("status") == "ok":
            log_run(Path(folder) / pid, f"{summary['sweep']}/{pid}", points.get(pid), parent.info.run_id,
                    uri, {"ovkit.seed": str(point.get("seed")), "ovkit.cell": str(point.get("cell"))})
    return parent.info.run_id
