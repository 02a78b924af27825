"""The least parse of a webhook body that routes it: its event type and its Kafka key."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from producer.errors import EnvelopeError
from sessionflow.events import KNOWN_EVENT_TYPES
from sessionflow.raw_record import KeyMissing, key_of

NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
NO_EVENT_TYPE = "no_event_type"
NO_KEY = "no_key"


@dataclass(frozen=True, slots=True)
class Envelope:
    event_type: str
    # None: an event that names no session (org-level), stored raw without a key.
    key: bytes | None


def parse_envelope(body: bytes) -> Envelope:
    """Event type and key of a body (sessionflow/raw_record.py decides the key), or
    EnvelopeError with a reason code (the DLQ path).

    orjson refuses what downstream parsers would choke on: invalid UTF-8, lone surrogates,
    NaN/Infinity, numbers beyond a double's range and nesting deeper than 1024. Integers beyond
    64 bits are valid JSON and pass (the worker's models keep them exactly).
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
    try:
        # orjson never yields lone surrogates, so the key always encodes.
        return Envelope(event_type, key_of(event_type, doc))
    except KeyMissing as exc:
        raise EnvelopeError(NO_KEY, str(exc)) from exc


def event_type_label(event_type: str) -> str:
    """A bounded metrics label: the known types, else `other`."""
    return event_type if event_type in KNOWN_EVENT_TYPES else "other"
