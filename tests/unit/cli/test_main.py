"""The CLI's surface: help and version."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cli.main import main
from sessionflow import __version__


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"sessionflow {__version__}"


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in (
        "version",
        "producer",
        "worker",
        "send",
        "run",
        "tail",
        "inspect",
        "dlq",
        "topics",
    ):
        assert command in out


@pytest.mark.parametrize(
    "argv",
    [["dlq"], ["tail"], ["tail", "everything"], ["tail", "completed", "--max", "x"]],
)
def test_incomplete_or_wrong_commands_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_dlq_replay_options_parse() -> None:
    from cli.main import build_parser

    args = build_parser().parse_args(
        ["dlq", "replay", "--reason", "a", "--reason", "b", "--dry-run", "--max", "5"]
    )
    assert (args.reason, args.dry_run, args.max_records) == (["a", "b"], True, 5)


def test_a_command_is_required() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def test_the_console_script_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("sessionflow ")
