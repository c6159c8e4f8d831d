"""Where the kit keeps things: project root, data, artifacts (stage cache) and runs.

Every location can be moved with an environment variable, so tests and CI can work in a
temporary folder without touching a user's data or cache.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout the kit runs from (``OVKIT_ROOT`` overrides).

    With an editable install the package lives inside the checkout, so its parent is the root;
    otherwise fall back to the current directory.
    """
    if os.environ.get("OVKIT_ROOT"):
        return Path(os.environ["OVKIT_ROOT"]).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd()


def _dir(env: str, default: str) -> Path:
    path = Path(os.environ[env]) if os.environ.get(env) else project_root() / default
    return path.resolve()


def data_dir() -> Path:
    """Fetched raw data and parse caches (``OVKIT_DATA``, default ``data/``)."""
    return _dir("OVKIT_DATA", "data")


def artifacts_dir() -> Path:
    """Stage cache (``OVKIT_ARTIFACTS``, default ``artifacts/``)."""
    return _dir("OVKIT_ARTIFACTS", "artifacts")


def runs_dir() -> Path:
    """Executed notebooks, metrics and reports (``OVKIT_RUNS``, default ``runs/``)."""
    return _dir("OVKIT_RUNS", "runs")


def current_profile() -> str:
    """The profile the runner set for this process; ``interactive`` when run by hand."""
    return os.environ.get("OVKIT_PROFILE", "interactive")


def current_run() -> str:
    """The run folder (under ``runs/``) this process records to: ``OVKIT_RUN``, else the profile.

    ``ovkit run`` records to ``runs/<profile>/``; a sweep point to ``runs/<sweep>/<point>/``.
    """
    return os.environ.get("OVKIT_RUN") or current_profile()
