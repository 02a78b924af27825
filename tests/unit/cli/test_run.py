"""`sessionflow run`'s pieces: the secret it hands its children, the banner, stopping children."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli import devsecret
from cli.run import (
    Child,
    RunSettings,
    banner,
    child_environ,
    enricher_configured,
    stop_children,
)
from sessionflow.signing import new_secret


def test_the_environment_secret_is_passed_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devsecret, "DEV_SECRETS_FILE", tmp_path / ".dev-secrets")
    secret = new_secret()
    env, note = child_environ({devsecret.ENV_VAR: secret, "OTHER": "1"})
    assert env == {devsecret.ENV_VAR: secret, "OTHER": "1"}
    assert note == f"from {devsecret.ENV_VAR}"
    assert not (tmp_path / ".dev-secrets").exists()


def test_without_a_secret_the_dev_file_is_created_then_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ".dev-secrets"
    monkeypatch.setattr(devsecret, "DEV_SECRETS_FILE", path)
    env, note = child_environ({})
    assert note.startswith(f"created a new development secret in {path}")
    assert env[devsecret.ENV_VAR] == devsecret.load_or_create(path)
    again, note = child_environ({devsecret.ENV_VAR: " "})
    assert note.startswith("using the development secret")
    assert again[devsecret.ENV_VAR] == env[devsecret.ENV_VAR]


def test_the_banner_says_where_to_look() -> None:
    text = banner(RunSettings(), "from X")
    assert "http://127.0.0.1:8080/webhooks/agntix" in text
    assert "http://127.0.0.1:8081/metrics" in text
    assert "http://127.0.0.1:8080/metrics" not in text
    assert "http://127.0.0.1:6066/metrics" in text
    assert ".venv/bin/sessionflow send --sessions 1000\n" in text
    assert ".venv/bin/sessionflow tail completed --from-beginning" in text
    other = banner(RunSettings(http_port=9999), "from X")
    assert "--url http://127.0.0.1:9999/webhooks/agntix" in other


def test_the_banner_says_whether_transcripts_are_fetched() -> None:
    assert "not fetched: set AGNTIX_API_URL" in banner(RunSettings(), "from X")
    text = banner(RunSettings(enricher_port=7777), "from X", enricher=True)
    assert "http://127.0.0.1:7777/metrics" in text
    assert "sessionflow tail transcripts --from-beginning" in text


@pytest.mark.parametrize(
    ("environ", "configured"),
    [
        ({}, False),
        ({"AGNTIX_API_URL": "https://api"}, False),
        ({"AGNTIX_API_KEY": "pk_x"}, False),
        ({"AGNTIX_API_URL": " ", "AGNTIX_API_KEY": "pk_x"}, False),
        ({"AGNTIX_API_URL": "https://api", "AGNTIX_API_KEY": ""}, False),
        ({"AGNTIX_API_URL": "https://api", "AGNTIX_API_KEY": "pk_x"}, True),
        ({"AGNTIX_API_URL": "https://api", "AGNTIX_API_TOKEN": "jwt"}, True),
    ],
)
def test_the_enricher_starts_only_when_configured(
    environ: dict[str, str], configured: bool
) -> None:
    assert enricher_configured(environ) is configured


def _child(name: str, code: str) -> Child:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    return Child(name, "", proc)


def test_stop_sends_sigterm_then_kills_after_the_deadline() -> None:
    polite = _child("polite", "import time; time.sleep(60)")
    stubborn = _child(
        "stubborn",
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)",
    )
    try:
        assert stubborn.proc.stdout is not None
        assert stubborn.proc.stdout.readline() == b"ready\n"  # its handler is in place
        started = time.monotonic()
        codes = stop_children([polite, stubborn], timeout_s=2.0)
        assert codes == {"polite": -signal.SIGTERM, "stubborn": -signal.SIGKILL}
        assert time.monotonic() - started < 10
    finally:
        for child in (polite, stubborn):
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()
            if child.proc.stdout is not None:
                child.proc.stdout.close()
