"""The `vigil` console script: help that reads like a manual, errors without tracebacks."""

import subprocess
import sys

import pytest

from cli.main import build_parser, main

SUBCOMMANDS = ["config", "train", "convert", "serve", "export", "monitor", "report", "loadtest", "demo",
               "versions", "promote", "demote", "archive", "rollback", "retrain"]


def test_help_lists_every_subcommand_and_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert f"\n    {name}" in out
    assert "vigil train --dataset iris" in out and "VIGIL_" in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_its_own_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([name, "--help"])
    assert f"usage: vigil {name}" in capsys.readouterr().out


def test_convert_needs_a_version_or_an_alias(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["convert", "iris"])
    assert info.value.code == 2
    assert "one of the arguments --version --alias is required" in capsys.readouterr().err


def test_a_bad_setting_is_one_line_on_stderr_not_a_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "config"],
        env={"VIGIL_PORT": "http", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "vigil config: VIGIL_PORT must be an integer, got 'http'"
    assert "Traceback" not in proc.stderr
