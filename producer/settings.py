"""The producer process's one frozen settings object (`SESSIONFLOW_*` environment variables)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from sessionflow.settings import MAX_PORT, KafkaSettings, Port
from sessionflow.signing import SECRET_PREFIX, SigningError, decode_secret

# The sender gives up on an attempt after 15 s; body read plus Kafka ack must end well before.
SENDER_TIMEOUT_SECONDS = 15.0
_PLACEHOLDER = re.compile(
    r"^(|x+|\.+|\*+|-+|<.*>|\{.*\}|\$.*"
    r"|(change.?me|placeholder|replace.?me|your.?secret.*|todo|example|dummy|secret|fake)\d*)$",
    re.IGNORECASE,
)


def _check_secret(secret: str) -> str:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret must start with 'whsec_'")
    body = secret[len(SECRET_PREFIX) :]
    if _PLACEHOLDER.match(body):
        raise ValueError("a webhook secret is empty or a placeholder")
    try:
        # Strict decoding: the library would silently drop stray characters and use another key.
        decode_secret(secret)
    except SigningError as exc:
        raise ValueError(str(exc)) from exc
    return secret


class ProducerSettings(KafkaSettings):
    """Where the HTTP service listens, which secrets it accepts and its deadlines."""

    # The public listener: the webhook and a bare liveness path, nothing else.
    http_host: str = "0.0.0.0"  # noqa: S104 - a container service listens on every interface
    http_port: Port = 8080
    # The admin listener: /metrics, /healthz, /readyz, /openapi.json; never exposed publicly.
    admin_host: str = "0.0.0.0"  # noqa: S104 - reached by probes and Prometheus in the pod network
    admin_port: Port = 8081
    # Processes sharing the public port (SO_REUSEPORT); process i's admin port is admin_port + i.
    http_processes: int = Field(default=1, ge=1, le=64)
    # Comma-separated, not JSON: NoDecode hands the raw string to the validator below.
    webhook_secrets: Annotated[tuple[SecretStr, ...], NoDecode] = Field(min_length=1)
    body_timeout_seconds: float = Field(default=5.0, gt=0)
    publish_timeout_seconds: float = Field(default=8.0, gt=0)
    timestamp_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    readiness_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    # Kafka unreachable this long: try a fresh client (librdkafka can lose its brokers for good).
    kafka_fresh_client_after_seconds: float = Field(default=10.0, gt=0, le=600)
    shutdown_timeout_seconds: int = Field(default=20, ge=1, le=300)

    @field_validator("webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            return tuple(
                _check_secret(v.get_secret_value() if isinstance(v, SecretStr) else str(v))
                for v in value
            )
        return value

    @model_validator(mode="after")
    def _admin_apart(self) -> Self:
        # Requests are told apart by the port they arrived on: one port for both would expose
        # the admin paths on the public listener or hide them.
        admin_ports = range(self.admin_port, self.admin_port + self.http_processes)
        if self.http_port in admin_ports:
            raise ValueError("admin_port (one per process) must differ from http_port")
        if admin_ports[-1] > MAX_PORT:
            raise ValueError("admin_port + http_processes - 1 must be a port number")
        return self

    def for_process(self, index: int) -> ProducerSettings:
        """The settings of one of several processes: its own admin port, no children of its own."""
        return self.model_copy(update={"admin_port": self.admin_port + index, "http_processes": 1})

    @model_validator(mode="after")
    def _fits_sender_deadline(self) -> Self:
        if self.body_timeout_seconds + self.publish_timeout_seconds >= SENDER_TIMEOUT_SECONDS:
            raise ValueError(
                "body_timeout_seconds + publish_timeout_seconds must stay below the sender's 15 s"
            )
        return self

    def webhook_keys(self) -> tuple[bytes, ...]:
        """The decoded HMAC keys, newest first as configured."""
        return tuple(decode_secret(s.get_secret_value()) for s in self.webhook_secrets)
