"""Turn one raw-topic record (body bytes + producer headers) into an Envelope for the core."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import orjson
from pydantic import ValidationError

from sessionflow.events import SESSION_CREATED, SESSION_ENDED
from sessionflow.raw_record import EVENT_TYPE, MESSAGE_ID, RECEIVED_AT
from streams.errors import StreamsError
from streams.models import SessionCreated, SessionEnded

DIGEST_SIZE: Final = 8

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)

_SESSION_MODELS: Final[dict[str, type[SessionCreated] | type[SessionEnded]]] = {
    SESSION_CREATED: SessionCreated,
    SESSION_ENDED: SessionEnded,
}


class DecodeError(StreamsError, ValueError):
    """A record the worker cannot use; `reason` is a short stable label for the DLQ header."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Envelope:
    event_type: str
    # The session id exactly as in the body (the producer's Kafka key) for session.* events.
    session_id: str | None
    message_id: str
    received_at_ms: int
    body: bytes
    # Content fingerprint: tells a resend (same content, new message id) from a conflict.
    digest: bytes
    event: SessionCreated | SessionEnded | None


def digest_of(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=DIGEST_SIZE).digest()


def decode(raw: bytes, headers: Mapping[str, bytes], now_ms: int) -> Envelope:
    """Validate what the core needs; other event types pass through shallowly checked.

    `now_ms` stands in for a missing or unreadable received-at header.
    """
    message_id = _text_header(headers, MESSAGE_ID)
    if not message_id:
        raise DecodeError("missing_message_id")
    received_at_ms = _received_at_ms(headers.get(RECEIVED_AT), now_ms)
    header_type = _text_header(headers, EVENT_TYPE)

    model = _SESSION_MODELS.get(header_type) if header_type else None
    if model is not None:
        event = _validate(model, raw, header_type)
        return Envelope(
            event_type=header_type,
            session_id=event.id,
            message_id=message_id,
            received_at_ms=received_at_ms,
            body=raw,
            digest=digest_of(raw),
            event=event,
        )

    # No header, or a type the core does not pair: a shallow parse tells the type.
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("not_json", str(exc)) from exc
    if not isinstance(parsed, dict):
        raise DecodeError("not_object")
    body_type = parsed.get("eventType")
    if not isinstance(body_type, str) or not body_type:
        raise DecodeError("no_event_type")
    if header_type and header_type != body_type:
        raise DecodeError("event_type_mismatch", f"header {header_type!r}, body {body_type!r}")
    model = _SESSION_MODELS.get(body_type)
    if model is not None:
        # Only without a header: the producer always writes one.
        return decode(raw, {**headers, EVENT_TYPE: body_type.encode()}, now_ms)
    session_id = parsed.get("id") if body_type.startswith("session.") else None
    return Envelope(
        event_type=body_type,
        session_id=session_id if isinstance(session_id, str) else None,
        message_id=message_id,
        received_at_ms=received_at_ms,
        body=raw,
        digest=digest_of(raw),
        event=None,
    )


def _validate(
    model: type[SessionCreated] | type[SessionEnded], raw: bytes, event_type: str
) -> SessionCreated | SessionEnded:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise DecodeError(_reason(exc, event_type), _summary(exc)) from exc


def _reason(exc: ValidationError, event_type: str) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return "not_json"
    if first["loc"] == () and first["type"] in ("model_type", "model_attributes_type"):
        return "not_object"
    if any(e["loc"] == ("eventType",) for e in errors):
        # The body says another type than the producer's header.
        return "event_type_mismatch"
    return "invalid_" + event_type.replace(".", "_")


def _summary(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<body>'}: {e['type']}" for e in errors[:5]
    )


def _text_header(headers: Mapping[str, bytes], name: str) -> str:
    value = headers.get(name)
    if not value:
        return ""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return ""


def _received_at_ms(value: bytes | None, now_ms: int) -> int:
    if not value:
        return now_ms
    try:
        moment = datetime.fromisoformat(value.decode())
    except (UnicodeDecodeError, ValueError):
        return now_ms
    if moment.tzinfo is None:
        return now_ms
    # Integer arithmetic: a float timestamp * 1000 can land one millisecond low.
    return (moment - _EPOCH) // _MS
