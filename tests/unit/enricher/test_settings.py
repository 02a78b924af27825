"""EnricherSettings: the API URL and exactly one credential, or a clear refusal; secrets stay secret."""

from __future__ import annotations

import os
from typing import Any

import pytest

from cli.main import main
from enricher.errors import EnricherConfigError
from enricher.settings import EnricherSettings, load_settings

KEY = "pk_live_0123456789abcdef"
URL = "https://api.agntix.example"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AGNTIX_", "SESSIONFLOW_")):
            monkeypatch.delenv(name)


def load(**values: Any) -> EnricherSettings:
    return load_settings(**values)


def test_a_key_and_url_load_and_the_key_goes_in_x_api_key() -> None:
    settings = load(AGNTIX_API_URL=URL + "/", AGNTIX_API_KEY=KEY)
    assert settings.agntix_api_url == URL
    assert settings.auth_headers() == {"x-api-key": KEY}
    assert settings.auth_scheme == "x-api-key"
    assert KEY not in repr(settings)
    assert KEY not in str(settings.model_dump())


def test_a_token_goes_in_a_bearer_header_even_when_given_with_its_prefix() -> None:
    settings = load(AGNTIX_API_URL=URL, AGNTIX_API_TOKEN="Bearer eyJ.abc.def")
    assert settings.auth_headers() == {"Authorization": "Bearer eyJ.abc.def"}
    assert settings.auth_scheme == "bearer"
    assert "eyJ" not in repr(settings)


def test_the_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGNTIX_API_URL", URL)
    monkeypatch.setenv("AGNTIX_API_KEY", KEY)
    monkeypatch.setenv("SESSIONFLOW_ENRICHER_CONCURRENCY", "3")
    monkeypatch.setenv("SESSIONFLOW_TOPIC_NAMESPACE", "ns.")
    settings = EnricherSettings()
    assert settings.enricher_concurrency == 3
    assert settings.group_id == "ns.sessionflow-enricher"


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({}, "AGNTIX_API_URL is required"),
        ({"AGNTIX_API_URL": URL}, "set AGNTIX_API_KEY"),
        (
            {"AGNTIX_API_URL": URL, "AGNTIX_API_KEY": "", "AGNTIX_API_TOKEN": " "},
            "set AGNTIX_API_KEY",
        ),
        ({"AGNTIX_API_URL": URL, "AGNTIX_API_KEY": KEY, "AGNTIX_API_TOKEN": "t0k3n"}, "not both"),
        ({"AGNTIX_API_URL": "ftp://x", "AGNTIX_API_KEY": KEY}, "http(s) URL"),
        ({"AGNTIX_API_URL": "https://x?y=1", "AGNTIX_API_KEY": KEY}, "no query"),
        ({"AGNTIX_API_URL": URL, "AGNTIX_API_KEY": "pk_<your key>"}, "placeholder"),
        ({"AGNTIX_API_URL": URL, "AGNTIX_API_KEY": "changeme"}, "placeholder"),
        ({"AGNTIX_API_URL": URL, "AGNTIX_API_KEY": "pk_a b"}, "whitespace"),
        (
            {"AGNTIX_API_URL": URL, "AGNTIX_API_KEY": KEY, "enricher_concurrency": 0},
            "SESSIONFLOW_ENRICHER_CONCURRENCY",
        ),
    ],
)
def test_refusals_name_what_to_set_and_never_echo_a_value(
    values: dict[str, Any], says: str
) -> None:
    with pytest.raises(EnricherConfigError) as caught:
        load(**values)
    assert says in str(caught.value)
    assert caught.value.__cause__ is None  # pydantic's message would quote the input
    for secret in ("pk_a b", "t0k3n", KEY):
        assert secret not in str(caught.value)


def test_the_messages_url_quotes_the_session_id() -> None:
    settings = load(AGNTIX_API_URL=URL + "/base/", AGNTIX_API_KEY=KEY)
    assert settings.messages_url("a/b?c") == URL + "/base/api/v1/chat/sessions/a%2Fb%3Fc/messages"


def test_the_command_refuses_to_start_without_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["enricher"]) == 2
    err = capsys.readouterr().err
    assert "sessionflow enricher: refusing to start: AGNTIX_API_URL is required" in err
