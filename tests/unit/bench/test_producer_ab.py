"""bench.producer_ab runs each variant's own command line, wherever its tree keeps it."""

from __future__ import annotations

from pathlib import Path

from bench.producer_ab import cli_module


def test_a_tree_with_the_cli_package_runs_it(tmp_path: Path) -> None:
    (tmp_path / "cli").mkdir()
    assert cli_module(tmp_path) == "cli"
    assert cli_module(Path(__file__).parents[3]) == "cli"  # this tree


def test_a_tree_from_before_issue_16_runs_sessionflow_cli(tmp_path: Path) -> None:
    (tmp_path / "sessionflow").mkdir()
    (tmp_path / "sessionflow" / "cli.py").write_text("")
    assert cli_module(tmp_path) == "sessionflow.cli"
