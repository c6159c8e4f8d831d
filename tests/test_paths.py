"""Where the kit keeps things: each location follows its environment variable, else the checkout."""

from pathlib import Path

import pytest

from ovkit import paths


@pytest.mark.parametrize("env, where, default", [
    ("OVKIT_DATA", paths.data_dir, "data"), ("OVKIT_ARTIFACTS", paths.artifacts_dir, "artifacts"),
    ("OVKIT_RUNS", paths.runs_dir, "runs")])
def test_each_folder_follows_its_variable_else_the_project_root(env, where, default, tmp_path, monkeypatch):
    monkeypatch.setenv("OVKIT_ROOT", str(tmp_path / "checkout"))
    monkeypatch.delenv(env, raising=False)
    assert where() == (tmp_path / "checkout" / default).resolve()
    monkeypatch.setenv(env, str(tmp_path / "elsewhere" / ".." / "moved"))
    assert where() == (tmp_path / "moved").resolve()  # resolved, so runs compare by one path


def test_the_root_is_the_checkout_the_package_is_installed_from(monkeypatch):
    monkeypatch.delenv("OVKIT_ROOT", raising=False)
    root = paths.project_root()
    assert (root / "pyproject.toml").exists() and (root / "ovkit" / "paths.py").exists()
    assert Path(paths.__file__).resolve().parent.parent == root


def test_profile_and_run_default_to_interactive_and_a_sweep_point_names_its_run(monkeypatch):
    monkeypatch.delenv("OVKIT_PROFILE", raising=False)
    monkeypatch.delenv("OVKIT_RUN", raising=False)
    assert paths.current_profile() == paths.current_run() == "interactive"
    monkeypatch.setenv("OVKIT_PROFILE", "smoke")
    assert paths.current_run() == "smoke"
    monkeypatch.setenv("OVKIT_RUN", "seeds-smoke/seed-1")
    assert (paths.current_profile(), paths.current_run()) == ("smoke", "seeds-smoke/seed-1")
