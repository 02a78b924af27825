"""Settings shared by every sessionflow process: where Kafka is, how to reach it, and how topics
are laid out."""

import ssl
from pathlib import Path
from typing import Annotated, Final, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_PORT: Final = 65535
# A TCP port one of our listeners takes (the producer's two, the worker's, the enricher's).
Port = Annotated[int, Field(ge=1, le=MAX_PORT)]
# Kafka's security protocols that speak TLS, and those that authenticate with SASL.
TLS_PROTOCOLS: Final = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS: Final = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})


class KafkaSettings(BaseSettings):
    """The base of each process's one frozen settings object (`SESSIONFLOW_*` variables)."""

    # An error names the setting and what is wrong with it, never the value: secrets (the webhook
    # secrets, Kafka's password, the API key) stay out of the traceback.
    model_config = SettingsConfigDict(
        env_prefix="SESSIONFLOW_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "SESSIONFLOW_KAFKA_BOOTSTRAP_SERVERS"
        ),
    )
    # How every Kafka client of the process connects (sessionflow/kafka_security.py): SASL's
    # PLAIN or SCRAM with a user and password, TLS with the system's CAs or this file's, and with a
    # client certificate (mutual TLS) where the brokers ask for one.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr = SecretStr("")
    partitions: int = Field(default=12, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=10)
    # The largest webhook body the producer takes; the raw and DLQ topics accept records this
    # large (plus headers), whoever creates them first.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, le=16 * 1024 * 1024)
    # The most the enricher reads from the Agntix API for one session's transcript; the
    # transcripts topic accepts records this large (plus the record's own fields).
    max_transcript_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    # JSON lines for a log pipeline (the containers set it), or text for a person at a terminal:
    # the same fields either way (sessionflow/logs.py).
    log_format: Literal["json", "text"] = "json"
    # Prefixed to every topic name; empty in production, unique per test so tests share a broker.
    topic_namespace: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$")

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Self:
        sasl = self.kafka_security_protocol in SASL_PROTOCOLS
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            raise ValueError(
                f"SESSIONFLOW_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs"
                " SESSIONFLOW_KAFKA_SASL_USERNAME and SESSIONFLOW_KAFKA_SASL_PASSWORD"
            )
        tls_files = {
            "SESSIONFLOW_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "SESSIONFLOW_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "SESSIONFLOW_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
        }
        for name, path in tls_files.items():
            if path is None:
                continue
            if self.kafka_security_protocol not in TLS_PROTOCOLS:
                raise ValueError(
                    f"{name} is set but SESSIONFLOW_KAFKA_SECURITY_PROTOCOL"
                    f" is {self.kafka_security_protocol}, without TLS"
                )
            if not path.is_file():
                raise ValueError(f"{name} {path} is not a file")
        self._check_client_certificate()
        return self

    def _check_client_certificate(self) -> None:
        """The certificate and its key come together, and load: a wrong pair or key password is
        a start-up error, not a TLS failure at the first connection."""
        cert, key = self.kafka_ssl_certfile, self.kafka_ssl_keyfile
        password = self.kafka_ssl_key_password.get_secret_value()
        if (cert is None) != (key is None) or (password and key is None):
            raise ValueError(
                "SESSIONFLOW_KAFKA_SSL_CERTFILE and SESSIONFLOW_KAFKA_SSL_KEYFILE go together"
                " (and SESSIONFLOW_KAFKA_SSL_KEY_PASSWORD only with them)"
            )
        if cert is None:
            return
        try:
            # A password, even empty, never None: OpenSSL would prompt for one on the terminal.
            ssl.create_default_context().load_cert_chain(cert, key, password)
        except ssl.SSLError as exc:  # names the failure, never the password
            raise ValueError(
                "SESSIONFLOW_KAFKA_SSL_CERTFILE and SESSIONFLOW_KAFKA_SSL_KEYFILE do not load as a"
                " certificate and its key (a wrong or missing SESSIONFLOW_KAFKA_SSL_KEY_PASSWORD,"
                f" a key of another certificate, or not PEM): {exc}"
            ) from None
