"""How a session's state is stored in the table: the value codec, version 2 written, 1 read."""

from __future__ import annotations

import struct
from typing import Any, Final

import orjson
import pydantic_core

from sessionflow.events import SESSION_CREATED, SESSION_ENDED
from streams.core import (
    CompletionMarker,
    HalfFields,
    HalfSeen,
    HalfType,
    PendingSession,
    SessionState,
    StateDecodeError,
    deadline_ms,
    fields_of,
)
from streams.models import Direction, Platform, SessionCreated, SessionEnded, SessionType

_PENDING: Final = "P"
_MARKER: Final = "M"

# State codec. Version 2 (written): the session id is the table's key, not repeated in the value.
# - pending: a JSON header line [2, "P", event type, message id, digest hex, received-at ms,
#   first-seen ms, agent id, type, platform, direction, createdAt us, endedAt us, lastActivityAt
#   us], then the raw body bytes after one b"\n" (orjson never writes a raw newline; the body is
#   kept verbatim: no escaping, exact round trip).
# - completion marker, binary (a few dozen bytes): b"\x02M", closed-at ms (8 bytes), the two
#   digests (8 bytes each), the created half's message id length (2 bytes), both message ids.
# Version 1 (read, from tables written before): a JSON header line [1, "P", session id, event
# type, message id, digest hex, received-at ms, first-seen ms] + b"\n" + body, or
# [1, "M", session id, closed-at ms, created id, digest hex, ended id, digest hex]; its halves are
# validated once when read, to take their fields.

_V2_MARKER: Final = b"\x02" + _MARKER.encode()
_MARKER_HEAD: Final = struct.Struct(">q8s8sH")
_CLOSED_AT: Final = struct.Struct(">q")
_V2_PENDING_HEAD: Final = b'[2,"' + _PENDING.encode() + b'",'


def encode_state(state: SessionState) -> bytes:
    if isinstance(state, PendingSession):
        f = state.fields
        head = orjson.dumps(
            [
                2,
                _PENDING,
                state.event_type,
                state.message_id,
                state.digest.hex(),
                state.received_at_ms,
                state.first_seen_ms,
                f.agent_id,
                f.type,
                f.platform,
                f.direction,
                f.created_at_us,
                f.ended_at_us,
                f.last_activity_at_us,
            ]
        )
        return head + b"\n" + state.body
    created, ended = state.created.message_id.encode(), state.ended.message_id.encode()
    return (
        _V2_MARKER
        + _MARKER_HEAD.pack(
            state.closed_at_ms, state.created.digest, state.ended.digest, len(created)
        )
        + created
        + ended
    )


def decode_state(data: bytes, session_id: str) -> SessionState:
    """Read a state of `session_id` (its table key), in any version this worker has written."""
    try:
        if data.startswith(_V2_MARKER):
            return _decode_marker_v2(data, session_id)
        head, sep, body = data.partition(b"\n")
        fields = orjson.loads(head)
        if not isinstance(fields, list) or not fields:
            raise StateDecodeError("unreadable session state")
        if fields[0] == 2 and fields[1:2] == [_PENDING] and sep:
            return _decode_pending_v2(fields, body, session_id)
        if fields[0] == 1:
            return _decode_v1(fields, sep, body)
        raise StateDecodeError(f"unknown state version or kind {fields[:2]!r}")
    except StateDecodeError:
        raise
    except (orjson.JSONDecodeError, ValueError, TypeError, IndexError, struct.error) as exc:
        raise StateDecodeError(f"unreadable session state: {exc}") from exc


def stored_deadline_ms(data: bytes, session_id: str, ttl_ms: int) -> tuple[int, bool]:
    """(deadline_ms, pending?) of a stored state, as `deadline_ms(decode_state(...))` says, read
    without building the state where the version allows (the expiry index reads every key)."""
    try:
        if data.startswith(_V2_MARKER):
            (closed_at_ms,) = _CLOSED_AT.unpack_from(data, len(_V2_MARKER))
            return closed_at_ms + ttl_ms, False
        if data.startswith(_V2_PENDING_HEAD):
            received_at_ms = orjson.loads(data[: data.index(b"\n")])[5]
            if isinstance(received_at_ms, int):
                return received_at_ms + ttl_ms, True
    except (orjson.JSONDecodeError, ValueError, IndexError, struct.error):
        pass  # decode_state says what is wrong with it
    state = decode_state(data, session_id)
    return deadline_ms(state, ttl_ms), isinstance(state, PendingSession)


def _decode_marker_v2(data: bytes, session_id: str) -> CompletionMarker:
    size = len(_V2_MARKER) + _MARKER_HEAD.size
    closed_at_ms, c_digest, e_digest, c_len = _MARKER_HEAD.unpack_from(data, len(_V2_MARKER))
    ids = data[size:]
    if c_len > len(ids):
        raise StateDecodeError("truncated completion marker")
    return CompletionMarker(
        session_id=session_id,
        closed_at_ms=closed_at_ms,
        created=HalfSeen(ids[:c_len].decode(), c_digest),
        ended=HalfSeen(ids[c_len:].decode(), e_digest),
    )


def _decode_pending_v2(fields: list[Any], body: bytes, session_id: str) -> PendingSession:
    (
        _,
        _,
        event_type,
        message_id,
        digest,
        received_at_ms,
        first_seen_ms,
        agent_id,
        type_,
        platform,
        direction,
        created_at_us,
        ended_at_us,
        last_activity_at_us,
    ) = fields
    if event_type not in (SESSION_CREATED, SESSION_ENDED):
        raise StateDecodeError(f"unknown half {event_type!r}")
    if (event_type == SESSION_ENDED) != (ended_at_us is not None):
        raise StateDecodeError("the fields do not fit the half")
    fields_ = HalfFields(
        agent_id,
        SessionType(type_),
        Platform(platform),
        Direction(direction),
        created_at_us,
        ended_at_us,
        last_activity_at_us,
    )
    return _pending(
        session_id, event_type, message_id, digest, received_at_ms, first_seen_ms, body, fields_
    )


def _pending(
    session_id: str,
    event_type: HalfType,
    message_id: str,
    digest_hex: str,
    received_at_ms: int,
    first_seen_ms: int,
    body: bytes,
    fields: HalfFields,
) -> PendingSession:
    """A stored pending half, as either version's header names it."""
    return PendingSession(
        session_id=session_id,
        event_type=event_type,
        message_id=message_id,
        digest=bytes.fromhex(digest_hex),
        received_at_ms=received_at_ms,
        first_seen_ms=first_seen_ms,
        body=body,
        fields=fields,
    )


def _decode_v1(fields: list[Any], sep: bytes, body: bytes) -> SessionState:
    _, kind, session_id, *rest = fields
    if kind == _PENDING and sep:
        event_type, message_id, digest, received_at_ms, first_seen_ms = rest
        model = _HALF_MODELS.get(event_type)
        if model is None:
            raise StateDecodeError(f"unknown half {event_type!r}")
        try:
            event = model.model_validate_json(body)
        except pydantic_core.ValidationError as exc:
            raise StateDecodeError(f"a stored half that is not valid: {exc}") from exc
        return _pending(
            session_id,
            event_type,
            message_id,
            digest,
            received_at_ms,
            first_seen_ms,
            body,
            fields_of(event),
        )
    if kind == _MARKER and not sep:
        closed_at_ms, c_id, c_digest, e_id, e_digest = rest
        return CompletionMarker(
            session_id=session_id,
            closed_at_ms=closed_at_ms,
            created=HalfSeen(c_id, bytes.fromhex(c_digest)),
            ended=HalfSeen(e_id, bytes.fromhex(e_digest)),
        )
    raise StateDecodeError(f"unknown state kind {kind!r}")


_HALF_MODELS: Final[dict[str, type[SessionCreated] | type[SessionEnded]]] = {
    SESSION_CREATED: SessionCreated,
    SESSION_ENDED: SessionEnded,
}
