"""The command-line tools' errors share one base, each still the builtin it always was."""

from __future__ import annotations

import pytest

from cli.devsecret import DevSecretError
from cli.errors import CliError
from cli.inspect import InspectError
from cli.run import RunError
from cli.tail import TailError
from cli.traffic import TrafficError


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (DevSecretError, RuntimeError),
        (InspectError, RuntimeError),
        (RunError, RuntimeError),
        (TailError, RuntimeError),
        (TrafficError, ValueError),
    ],
)
def test_cli_errors_share_one_base(error: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(error, CliError)
    assert issubclass(error, builtin)
