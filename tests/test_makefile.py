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
