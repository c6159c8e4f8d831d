"""The ``ovkit`` command: its subcommands, argument errors, and one-paragraph errors for bad input."""

import subprocess
import sys

import pytest

from ovkit import cli


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "sweep", "fetch", "clean-partial", "compare", "resources", "export-folder"):
        assert command in out


def test_an_unknown_subcommand_or_option_is_an_argparse_error(capsys):
    for argv in (["reproduce"], ["run", "--profiel", "smoke"]):
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        assert done.value.code == 2
    assert "invalid choice: 'reproduce'" in capsys.readouterr().err


def test_an_unknown_profile_is_one_paragraph_naming_the_profiles(capsys):
    assert cli.main(["run", "--profile", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ovkit: error:") and "nope" in err and "smoke" in err and "Traceback" not in err


def test_the_module_runs_as_python_dash_m_ovkit():
    done = subprocess.run([sys.executable, "-m", "ovkit", "--help"], capture_output=True, text=True,
                          check=True)
    assert "OneVision reproducibility kit" in done.stdout
