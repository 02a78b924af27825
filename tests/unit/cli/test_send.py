"""`sessionflow send` from its command line, against a receiver that verifies with svix."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from cli import devsecret, send
from tests.unit.cli.webhook_receiver import SECRET_NEW, SECRET_OLD, Receiver


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sessionflow send")
    send.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_run_succeeds_and_writes_the_json_summary(
    serve: Callable[..., Receiver],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(devsecret.ENV_VAR, f"{SECRET_OLD},{SECRET_NEW}")
    receiver = serve([SECRET_OLD])
    summary_path = tmp_path / "summary.json"
    args = parse(
        [
            "--sessions",
            "20",
            "--url",
            receiver.url,
            "--seed",
            "5",
            "--concurrency",
            "4",
            "--half-only-share",
            "0.1",
            "--header-family",
            "webhook",
            "--no-progress",
            "--json-summary",
            str(summary_path),
        ]
    )
    assert send.run(args) == 0
    out = capsys.readouterr().out
    assert "p50" in out
    assert "p99" in out
    assert "18 completed sessions, 2 incomplete" in out
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["ok"] is True
    assert summary["failures"] == 0
    assert summary["expected"]["completed"] == 18
    assert len(summary["expected"]["complete_session_ids"]) == 18
    assert set(summary["expected"]["incomplete_sessions"].values()) <= {
        "created_without_ended",
        "ended_without_created",
    }
    assert set(summary["delivered_message_ids"]) == set(receiver.attempts)
    assert summary["parameters"]["seed"] == 5
    assert receiver.families == Counter({"webhook": summary["requests"]})


def test_cli_run_exits_non_zero_when_an_event_never_gets_a_2xx(
    serve: Callable[..., Receiver],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(devsecret.ENV_VAR, SECRET_NEW)
    receiver = serve([SECRET_NEW], lambda _m, _a: (500, {}))
    args = parse(
        [
            "--sessions",
            "2",
            "--url",
            receiver.url,
            "--max-attempts",
            "2",
            "--retry-base-seconds",
            "0.01",
            "--no-progress",
        ]
    )
    assert send.run(args) == 1
    assert "never got a 2xx" in capsys.readouterr().out


def test_cli_run_without_any_secret_explains_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(devsecret.ENV_VAR, raising=False)
    monkeypatch.setattr(devsecret, "DEV_SECRETS_FILE", tmp_path / "missing")
    assert send.run(parse(["--sessions", "1", "--no-progress"])) == 2
    assert "SESSIONFLOW_WEBHOOK_SECRETS" in capsys.readouterr().err


def test_cli_uses_the_dev_secret_file_when_env_is_unset(
    serve: Callable[..., Receiver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(devsecret.ENV_VAR, raising=False)
    path = tmp_path / ".dev-secrets"
    monkeypatch.setattr(devsecret, "DEV_SECRETS_FILE", path)
    receiver = serve([devsecret.load_or_create(path)])
    assert send.run(parse(["--sessions", "3", "--url", receiver.url, "--no-progress"])) == 0
    assert receiver.bad_signatures == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--sessions", "0"],
        ["--sessions", "1", "--retry-share", "1.5"],
        ["--sessions", "1", "--rate", "-3"],
        ["--sessions", "1", "--header-family", "other"],
    ],
)
def test_cli_refuses_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(argv)
