"""The enricher's one frozen settings object: `AGNTIX_*` for the API, `SESSIONFLOW_*` for the rest."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any, Final, Self

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from enricher.errors import EnricherConfigError
from sessionflow.settings import KafkaSettings, Port

URL_VAR: Final = "AGNTIX_API_URL"
KEY_VAR: Final = "AGNTIX_API_KEY"
TOKEN_VAR: Final = "AGNTIX_API_TOKEN"  # noqa: S105 - a variable name, not a secret
# The path the platform's page documents for a session's messages.
MESSAGES_PATH: Final = "/api/v1/chat/sessions/{id}/messages"

_PLACEHOLDER = re.compile(
    r"^(pk_)?(|x+|\.+|…|\*+|-+|<.*>|\{.*\}|\$.*"
    r"|(change.?me|placeholder|replace.?me|your.?(api.?)?(key|token).*|todo|example|dummy|fake)\d*)$",
    re.IGNORECASE,
)
_BEARER = re.compile(r"^bearer\s+", re.IGNORECASE)


def _credential(value: Any, name: str) -> Any:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return None
    text = _BEARER.sub("", str(value).strip()) if name == TOKEN_VAR else str(value).strip()
    if not text:
        return None  # an empty variable (compose passes one) is an absent one
    if _PLACEHOLDER.match(text):
        raise ValueError(f"{name} is a placeholder, not a credential")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ValueError(f"{name} holds whitespace or control characters")
    return SecretStr(text)


class EnricherSettings(KafkaSettings):
    """Where the Agntix API is, how to authenticate, and how politely to call it."""

    agntix_api_url: str = Field(validation_alias=AliasChoices(URL_VAR, "agntix_api_url"))
    # x-api-key: pk_… (an organisation API key) or Authorization: Bearer <JWT>; exactly one.
    agntix_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices(KEY_VAR, "agntix_api_key")
    )
    agntix_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices(TOKEN_VAR, "agntix_api_token")
    )
    enricher_host: str = "0.0.0.0"  # noqa: S104 - the metrics endpoint is scraped from outside
    enricher_port: Port = 6067
    # Namespaced like the topics; one group however many enrichers run.
    enricher_group_id: str = Field(default="sessionflow-enricher", pattern=r"^[A-Za-z0-9._-]+$")
    # Sessions fetched at once (also the size of the one HTTP connection pool).
    enricher_concurrency: int = Field(default=8, ge=1, le=256)
    # Requests per second to the API, retries and pages included, per enricher process.
    enricher_rate_per_second: float = Field(default=10.0, gt=0, le=10_000)
    enricher_request_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # After this long a session's record says `failed`, however many retries were left.
    enricher_session_deadline_seconds: float = Field(default=120.0, gt=0, le=86_400)
    # Tries of one request (one page) before the record says `failed`.
    enricher_max_attempts: int = Field(default=10, ge=1, le=1000)
    enricher_backoff_initial_seconds: float = Field(default=0.5, gt=0, le=60)
    enricher_backoff_max_seconds: float = Field(default=30.0, gt=0, le=3600)
    enricher_max_pages: int = Field(default=100, ge=1, le=100_000)
    # The query parameter that carries a cursor back (the page does not document one).
    enricher_cursor_param: str = Field(default="cursor", pattern=r"^[A-Za-z0-9_.-]+$")
    # While the API answers 401/403, one session is tried again this often; nothing is skipped.
    enricher_auth_retry_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Offsets of sessions whose transcript Kafka acknowledged are committed this often.
    enricher_commit_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    # Not ready while the broker has not answered a read of the input's ends (one every commit
    # interval) for this long: a cut-off enricher's fetches only come back empty.
    enricher_unreachable_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Session ids this process remembers having written (a duplicate completed record is skipped).
    enricher_remember_sessions: int = Field(default=100_000, ge=0, le=10_000_000)

    @field_validator("agntix_api_url", mode="before")
    @classmethod
    def _check_url(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            raise ValueError(f"{URL_VAR} is empty")
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{URL_VAR} must be an http(s) URL such as https://api.example.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"{URL_VAR} takes no query, fragment or credentials")
        return text.rstrip("/")

    @field_validator("agntix_api_key", mode="before")
    @classmethod
    def _check_key(cls, value: Any) -> Any:
        return _credential(value, KEY_VAR)

    @field_validator("agntix_api_token", mode="before")
    @classmethod
    def _check_token(cls, value: Any) -> Any:
        return _credential(value, TOKEN_VAR)

    @model_validator(mode="after")
    def _one_credential(self) -> Self:
        if self.agntix_api_key is None and self.agntix_api_token is None:
            raise ValueError(f"set {KEY_VAR} (x-api-key: pk_…) or {TOKEN_VAR} (a Bearer JWT)")
        if self.agntix_api_key is not None and self.agntix_api_token is not None:
            raise ValueError(f"set {KEY_VAR} or {TOKEN_VAR}, not both")
        if self.enricher_backoff_initial_seconds > self.enricher_backoff_max_seconds:
            raise ValueError(
                "enricher_backoff_initial_seconds exceeds enricher_backoff_max_seconds"
            )
        return self

    @property
    def group_id(self) -> str:
        return f"{self.topic_namespace}{self.enricher_group_id}"

    @property
    def auth_scheme(self) -> str:
        """`x-api-key` or `bearer`: what the logs may say about the credential."""
        return "x-api-key" if self.agntix_api_key is not None else "bearer"

    def auth_headers(self) -> dict[str, str]:
        """The one authentication header; its value is a secret, never logged."""
        if self.agntix_api_key is not None:
            return {"x-api-key": self.agntix_api_key.get_secret_value()}
        assert self.agntix_api_token is not None  # noqa: S101 - guaranteed by _one_credential
        return {"Authorization": f"Bearer {self.agntix_api_token.get_secret_value()}"}

    def messages_url(self, session_id: str) -> str:
        return self.agntix_api_url + MESSAGES_PATH.format(
            id=urllib.parse.quote(session_id, safe="")
        )


def load_settings(**overrides: Any) -> EnricherSettings:
    """The settings from the environment, or an EnricherConfigError that says what to set."""
    try:
        return EnricherSettings(**overrides)
    except ValidationError as exc:
        # `from None`: pydantic's own message quotes the input, which may be the credential.
        raise EnricherConfigError(explain(exc)) from None


def explain(exc: ValidationError) -> str:
    """One line per problem, naming the environment variable to set; never echoing a value."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = [str(part) for part in error["loc"]]
        name = loc[0] if loc else ""
        if error["type"] == "missing" and name in ("AGNTIX_API_URL", "agntix_api_url"):
            lines.append(f"{URL_VAR} is required: the Agntix API base URL (https://…)")
            continue
        variable = {
            "agntix_api_url": URL_VAR,
            "agntix_api_key": KEY_VAR,
            "agntix_api_token": TOKEN_VAR,
        }.get(
            name,
            name.upper()
            if name.startswith(("AGNTIX", "agntix"))
            else f"SESSIONFLOW_{name.upper()}",
        )
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(message if not name or variable in message else f"{variable}: {message}")
    return "; ".join(lines)
