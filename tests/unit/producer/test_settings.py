"""Producer settings: the environment, comma-separated secrets, and refusals."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from producer.settings import ProducerSettings
from sessionflow.signing import decode_secret

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET2 = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()


def test_environment_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSIONFLOW_WEBHOOK_SECRETS", f" {SECRET} , {SECRET2},")
    monkeypatch.setenv("SESSIONFLOW_HTTP_PORT", "9191")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    s = ProducerSettings()
    assert [x.get_secret_value() for x in s.webhook_secrets] == [SECRET, SECRET2]
    assert s.webhook_keys() == (decode_secret(SECRET), decode_secret(SECRET2))
    assert s.http_port == 9191
    assert s.kafka_bootstrap_servers == "127.0.0.1:19092"
    assert s.max_body_bytes == 1024 * 1024
    assert s.publish_timeout_seconds == 8
    assert SECRET not in repr(s)


def test_refuses_to_start_without_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SESSIONFLOW_WEBHOOK_SECRETS", raising=False)
    with pytest.raises(ValidationError):
        ProducerSettings()
    monkeypatch.setenv("SESSIONFLOW_WEBHOOK_SECRETS", " , ")
    with pytest.raises(ValidationError):
        ProducerSettings()


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_",
        "whsec_changeme",
        "whsec_xxxxxxxx",
        "whsec_placeholder",
        "whsec_not base64!",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_====",
        "whsec_<secret>",
    ],
)
def test_refuses_bad_secrets(secret: str) -> None:
    with pytest.raises(ValidationError):
        ProducerSettings(webhook_secrets=secret)


def test_decoding_matches_the_library() -> None:
    from standardwebhooks.webhooks import Webhook

    unpadded = SECRET2.rstrip("=")
    assert decode_secret(unpadded) == Webhook(unpadded)._whsecret
    assert ProducerSettings(webhook_secrets=unpadded).webhook_keys() == (decode_secret(SECRET2),)


def test_is_frozen() -> None:
    s = ProducerSettings(webhook_secrets=SECRET)
    with pytest.raises(ValidationError):
        s.http_port = 1  # type: ignore[misc]


def test_deadlines_must_fit_the_sender_timeout() -> None:
    with pytest.raises(ValidationError, match="15 s"):
        ProducerSettings(webhook_secrets=SECRET, body_timeout_seconds=7, publish_timeout_seconds=8)


def test_the_admin_listener_has_its_own_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = ProducerSettings(webhook_secrets=SECRET)
    assert (defaults.http_port, defaults.admin_port) == (8080, 8081)
    monkeypatch.setenv("SESSIONFLOW_ADMIN_HOST", "127.0.0.1")
    monkeypatch.setenv("SESSIONFLOW_ADMIN_PORT", "9191")
    s = ProducerSettings(webhook_secrets=SECRET)
    assert (s.admin_host, s.admin_port) == ("127.0.0.1", 9191)


def test_the_admin_port_must_differ_from_the_public_port() -> None:
    with pytest.raises(ValidationError, match="admin_port"):
        ProducerSettings(webhook_secrets=SECRET, http_port=9000, admin_port=9000)


def test_each_of_several_processes_gets_its_own_admin_port() -> None:
    s = ProducerSettings(webhook_secrets=SECRET, http_processes=3)
    assert [s.for_process(i).admin_port for i in range(3)] == [8081, 8082, 8083]
    assert {s.for_process(i).http_processes for i in range(3)} == {1}
    assert s.for_process(2).http_port == 8080
    with pytest.raises(ValidationError, match="admin_port"):
        ProducerSettings(webhook_secrets=SECRET, http_port=8082, http_processes=2)
    with pytest.raises(ValidationError, match="admin_port"):
        ProducerSettings(webhook_secrets=SECRET, admin_port=65535, http_processes=2)
