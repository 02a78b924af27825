"""Settings shared by every sessionflow process: where Kafka is and how topics are laid out."""

from typing import Annotated, Final, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MAX_PORT: Final = 65535
# A TCP port one of our listeners takes (the producer's two, the worker's, the enricher's).
Port = Annotated[int, Field(ge=1, le=MAX_PORT)]


class KafkaSettings(BaseSettings):
    """The base of each process's one frozen settings object (`SESSIONFLOW_*` variables)."""

    model_config = SettingsConfigDict(env_prefix="SESSIONFLOW_", frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "SESSIONFLOW_KAFKA_BOOTSTRAP_SERVERS"
        ),
    )
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
