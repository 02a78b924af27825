"""The least parse of a webhook body that routes it: its event type and its Kafka key."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from producer.errors import EnvelopeError
from sessionflow.events import KNOWN_EVENT_TYPES, MESSAGE_ADDED

NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
NO_EVENT_TYPE = "no_event_type"
NO_KEY = "no_key"


@dataclass(frozen=True, slots=True)
class Envelope:
    event_type: str
    key: bytes


def key_field(event_type: str) -> str:
    """Which field holds the session id, so that every event of a session shares a partition."""
    return "sessionId" if event_type == MESSAGE_ADDED else "id"


def parse_envelope(body: bytes) -> Envelope:
    """Event type and key of a body, or EnvelopeError with a reason code (the DLQ path).

    orjson refuses what downstream parsers would choke on: invalid UTF-8, lone surrogates,
    NaN/Infinity, integers beyond 64 bits and nesting deeper than 1024.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError(NOT_JSON, str(exc)) from exc
    if not isinstance(doc, dict):
        raise EnvelopeError(NOT_OBJECT, "the body is not a JSON object")
    event_type = doc.get("eventType")
    if not isinstance(event_type, str) or not event_type:
        raise EnvelopeError(NO_EVENT_TYPE, "eventType is missing or not a non-empty string")
    field = key_field(event_type)
    key = doc.get(field)
    if not isinstance(key, str) or not key:
        raise EnvelopeError(NO_KEY, f"{field} is missing or not a non-empty string")
    # orjson never yields lone surrogates, so the key always encodes.
    return Envelope(event_type, key.encode())


def event_type_label(event_type: str) -> str:
    """A bounded metrics label: the known types, else `other`."""
    return event_type if event_type in KNOWN_EVENT_TYPES else "other"
