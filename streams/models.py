"""Pydantic models of the Agntix webhook events (CONTRACT.md) and of the worker's output records."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from sessionflow.events import (
    KNOWLEDGE_STORE_UPDATED,
    MESSAGE_ADDED,
    SESSION_CREATED,
    SESSION_ENDED,
    SESSION_UPDATED,
    SUBSCRIPTION_UPDATED,
    USAGE_UPDATED,
)

SCHEMA_VERSION: Final = 1

_NAIVE_EPOCH: Final = datetime(1970, 1, 1)  # noqa: DTZ001 - UTC by construction, see format_ms


class SessionType(StrEnum):
    VOICE = "VOICE"
    CHAT = "CHAT"


class Platform(StrEnum):
    PHONE = "PHONE"
    WEB = "WEB"
    WHATSAPP = "WHATSAPP"


class Direction(StrEnum):
    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


class SessionStatus(StrEnum):
    # EXPIRED is documented for session.updated; a session closed by TTL expiry may carry it too.
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    EXPIRED = "EXPIRED"


class MessageRole(StrEnum):
    USER = "USER"
    ASSISTANT = "ASSISTANT"
    TOOL = "TOOL"
    SYSTEM = "SYSTEM"


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"
    PAUSED = "paused"


class DocumentStatus(StrEnum):
    UPSERTED = "UPSERTED"
    FAILED = "FAILED"


class IncompleteReason(StrEnum):
    CREATED_WITHOUT_ENDED = "created_without_ended"
    ENDED_WITHOUT_CREATED = "ended_without_created"


# A UUID kept as the very string received: the session id is also the producer's Kafka key, so the
# table key and its partition must be byte-identical to it (no canonical re-spelling).
UuidText = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        json_schema_extra={"format": "uuid"},
    ),
]

# The raw JSON objects we pass through untouched: validated as "some JSON object", never re-modelled,
# so key order, unknown keys and (big) integers survive into the output.
JsonObject = dict[str, Any]


class _Event(BaseModel):
    """Unknown fields are kept (extra="allow"): the raw bytes are the record of truth."""

    model_config = ConfigDict(extra="allow", frozen=True)


class _SessionEvent(_Event):
    id: UuidText
    type: SessionType
    platform: Platform
    direction: Direction
    state: SessionStatus
    agentId: UuidText
    createdAt: AwareDatetime
    metadata: JsonObject | None = None


class SessionCreated(_SessionEvent):
    eventType: Literal["session.created"]


class SessionEnded(_SessionEvent):
    eventType: Literal["session.ended"]
    lastActivityAt: AwareDatetime
    endedAt: AwareDatetime
    analysis: JsonObject | None = None


# Planned events: their field names are our reading of the docs, so everything is optional and
# nothing here is on the worker's path (they are counted by type and stay in the raw topic).
class SessionUpdated(_Event):
    eventType: Literal["session.updated"]
    id: str
    changedFields: list[str] | None = None
    state: SessionStatus | None = None


class MessageAdded(_Event):
    eventType: Literal["message.added"]
    id: str
    sessionId: str | None = None
    role: MessageRole | None = None
    content: str | None = None


class UsagePeriod(_Event):
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None


class UsageTotals(_Event):
    chat_messages: float | None = None
    voice_seconds: float | None = None
    knowledge_chunks: float | None = None


class UsageUpdated(_Event):
    eventType: Literal["usage.updated"]
    period: UsagePeriod | None = None
    totals: UsageTotals | None = None


class SubscriptionUpdated(_Event):
    eventType: Literal["subscription.updated"]
    status: SubscriptionStatus | None = None
    plan: str | None = None


class KnowledgeStoreUpdated(_Event):
    eventType: Literal["knowledge_store.updated"]
    status: DocumentStatus | None = None


EVENT_MODELS: Final[dict[str, type[_Event]]] = {
    SESSION_CREATED: SessionCreated,
    SESSION_ENDED: SessionEnded,
    SESSION_UPDATED: SessionUpdated,
    MESSAGE_ADDED: MessageAdded,
    USAGE_UPDATED: UsageUpdated,
    SUBSCRIPTION_UPDATED: SubscriptionUpdated,
    KNOWLEDGE_STORE_UPDATED: KnowledgeStoreUpdated,
}

# Output records -----------------------------------------------------------------------------

UtcMillis = Annotated[
    str,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
        json_schema_extra={"format": "date-time"},
        description="RFC 3339, UTC, milliseconds",
    ),
]


def format_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds, e.g. 2024-05-01T12:00:00.123Z."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_format_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _format_second(epoch_s: int) -> str:
    # Integer timedelta from a naive UTC epoch: exact, and faster than an aware datetime. A
    # worker formats the same few seconds over and over (now, and the received-at of the halves
    # it pairs), so each second is formatted once.
    return (_NAIVE_EPOCH + timedelta(seconds=epoch_s)).isoformat()


def format_dt(moment: datetime) -> str:
    """An aware datetime as RFC 3339 UTC with milliseconds (sub-millisecond digits are cut)."""
    # isoformat of a UTC datetime always ends in "+00:00"; it is several times faster than strftime.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class HalfRef(TypedDict):
    """Which webhook message delivered a half, and when the producer accepted it."""

    messageId: str
    receivedAt: UtcMillis


class _Output(BaseModel):
    # Built by the core from already validated events (model_construct), so no re-validation
    # on the hot path; the strict config documents the schema and guards hand-made records.
    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )


class CompletedSession(_Output):
    """One per session: session.created and session.ended paired."""

    schemaVersion: Literal[1] = SCHEMA_VERSION
    sessionId: UuidText
    agentId: UuidText
    type: SessionType
    platform: Platform
    direction: Direction
    createdAt: UtcMillis
    endedAt: UtcMillis
    lastActivityAt: UtcMillis
    durationSeconds: Annotated[float, Field(description="endedAt - createdAt")]
    metadata: Annotated[
        JsonObject | None, Field(description="from session.created, exactly as received")
    ]
    analysis: Annotated[
        JsonObject | None, Field(description="from session.ended, exactly as received")
    ]
    created: HalfRef
    ended: HalfRef
    completedAt: UtcMillis


class IncompleteSession(_Output):
    """A half that found no pair within the TTL."""

    schemaVersion: Literal[1] = SCHEMA_VERSION
    sessionId: UuidText
    reason: IncompleteReason
    firstSeenAt: Annotated[UtcMillis, Field(description="when the worker first saw the half")]
    expiredAt: UtcMillis
    received: Annotated[HalfRef, Field(description="the message that delivered the half")]
    event: Annotated[JsonObject, Field(description="the half we have, exactly as received")]


OutputRecord = CompletedSession | IncompleteSession


def encode_output(record: OutputRecord) -> bytes:
    """The record as compact JSON bytes, fields in schema order."""
    # The fields live in __dict__ as plain values (str enums, dicts): orjson takes them directly,
    # which is several times faster than model_dump_json.
    try:
        return orjson.dumps(record.__dict__)
    except orjson.JSONEncodeError:
        # Integers beyond 64 bits (a customer's numeric id in sessionVariables) are valid JSON
        # that orjson refuses; the stdlib writes them exactly.
        return json.dumps(record.__dict__, ensure_ascii=False, separators=(",", ":")).encode()
