"""The Makefile's user-facing targets do what the README says."""

import os
import subprocess

import pytest
from conftest import REPO


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX user ids")
def test_make_lab_allows_root_only_when_root():
    done = subprocess.run(["make", "-n", "lab"], cwd=REPO, capture_output=True, text=True, check=True)
    command = [line for line in done.stdout.splitlines() if "jupyter lab" in line][-1]
    assert ("--allow-root" in command) == (os.getuid() == 0)


@pytest.mark.parametrize("target", ["seeds", "why", "scaling"])
def test_make_seeds_and_why_sweep_the_profile_and_install_ray_first(target):
    done = subprocess.run(["make", "-n", "-W", "pyproject.toml", target, "PROFILE=smoke"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    install = next(i for i, line in enumerate(lines) if "[dev,sweep,track]" in line)
    command = f"ovkit sweep sweeps/{target}.yaml --profile smoke"
    sweep = next(i for i, line in enumerate(lines) if command in line)
    assert install < sweep


def test_make_ui_installs_mlflow_and_opens_the_kits_store():
    done = subprocess.run(["make", "-n", "-W", "pyproject.toml", "ui"], cwd=REPO, capture_output=True,
                          text=True, check=True, env={**os.environ, "OVKIT_TRACKING_URI": ""})
    lines = done.stdout.splitlines()
    install = next(i for i, line in enumerate(lines) if "[dev,sweep,track]" in line)
    ui = next(i for i, line in enumerate(lines) if "mlflow ui --backend-store-uri" in line)
    assert install < ui and "/mlflow.db" in lines[ui]


def test_make_profile_runs_on_empty_caches_of_its_own_then_prints_resources():
    done = subprocess.run(["make", "-n", "-W", "pyproject.toml", "profile", "PROFILE=smoke"], cwd=REPO,
                          capture_output=True, text=True, check=True)
    text = done.stdout.replace("\\\n", " ")
    cold = str(REPO / "runs" / "cold-start")
    assert f"rm -rf {cold}" in text  # only its own folder is emptied: the user's caches stay
    run = next(line for line in text.splitlines() if "ovkit run --profile smoke" in line)
    for env in (f"OVKIT_ARTIFACTS={cold}/artifacts", f"OVKIT_DATA={cold}/data", f"OVKIT_RUNS={cold}"):
        assert env in run
    assert f"ovkit resources {cold}/smoke" in text


def test_make_test_ends_with_the_browser_tests_after_nbval():
    done = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, check=True)
    steps = next(line for line in done.stdout.splitlines() if "lint unit-all nbval" in line)
    assert steps.rstrip().endswith("lint unit-all nbval test-browser")  # nbval builds the smoke cache first
    browser = subprocess.run(["make", "-n", "test-browser"], cwd=REPO, capture_output=True, text=True,
                             check=True)
    assert "apt-get install -y -qq chromium" in browser.stdout and "-m browser" in browser.stdout
