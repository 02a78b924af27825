"""The per-session state machine: dedup, created/ended pairing and expiry, free of Faust and Kafka."""

# Clocks. A half's TTL runs on stream time: from its received-at, the producer's clock when the
# webhook arrived (`received_at_ms`), never from when a worker got round to it. Whether the pair
# meets is then a fact about the traffic, not about the worker: a stall, a rebalance or a backlog
# older than the TTL pairs exactly the halves that arrived within TTL of each other. A completion
# marker expires TTL after the later half's received-at (`closed_at_ms`).
# on_event expires an overdue state first, as of the event's own received-at, exactly as a timer
# would have done had it run before the event. The timer (on_expiry) is given a stream-time
# horizon that the caller guarantees every earlier-received record of the partition has passed
# (streams/expiry.py, `RawProgress.horizon_ms`), so it never expires a half whose partner is waiting.
# The worker's clock (`now_ms`) only fills the report fields firstSeenAt, expiredAt, completedAt.

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias

import orjson
import pydantic_core

from sessionflow.events import SESSION_CREATED, SESSION_ENDED
from streams.decode import Envelope
from streams.errors import StreamsError
from streams.models import (
    CompletedSession,
    Direction,
    HalfRef,
    IncompleteReason,
    IncompleteSession,
    OutputRecord,
    Platform,
    SessionCreated,
    SessionEnded,
    SessionType,
    format_ms,
)

DuplicateKind: TypeAlias = Literal["retry", "resend", "conflict"]
HalfType: TypeAlias = Literal["session.created", "session.ended"]


_PENDING: Final = "P"
_MARKER: Final = "M"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)


class StateDecodeError(StreamsError, ValueError):
    """Stored bytes that are not a SessionState written by encode_state."""


@dataclass(frozen=True, slots=True)
class HalfSeen:
    """Enough of a half to classify a late duplicate of it."""

    message_id: str
    digest: bytes


@dataclass(frozen=True, slots=True)
class HalfFields:
    """What the completed record takes from a half besides its JSON objects (metadata, analysis),
    taken when the half was validated: pairing never validates the stored half again."""

    agent_id: str
    type: SessionType
    platform: Platform
    direction: Direction
    created_at_us: int
    # session.ended only
    ended_at_us: int | None = None
    last_activity_at_us: int | None = None


@dataclass(frozen=True, slots=True)
class PendingSession:
    """One half, waiting for its pair (or for the TTL)."""

    session_id: str
    event_type: HalfType
    message_id: str
    digest: bytes
    received_at_ms: int
    first_seen_ms: int
    # The half exactly as received: the incomplete record's `event`, metadata and analysis.
    body: bytes
    fields: HalfFields


@dataclass(frozen=True, slots=True)
class CompletionMarker:
    """What is left of a completed session: drops late duplicates until the TTL."""

    session_id: str
    # Stream time of the pairing: the later half's received-at.
    closed_at_ms: int
    created: HalfSeen
    ended: HalfSeen


SessionState: TypeAlias = PendingSession | CompletionMarker


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one event or expiry check for one session."""

    state: SessionState | None  # None: delete the key
    changed: bool  # False: no table write needed
    outputs: tuple[OutputRecord, ...] = ()
    duplicate: DuplicateKind | None = None
    half_conflicts: tuple[str, ...] = ()
    # +1 a pending session appeared, -1 one was paired or expired (for a pending-sessions gauge).
    pending_delta: int = 0
    # First half to second half, by their received-at; set when a pair completes.
    pairing_wait_ms: int | None = None


def deadline_ms(state: SessionState, ttl_ms: int) -> int:
    """The stream time (a received-at) from which this state is expired."""
    if isinstance(state, PendingSession):
        return state.received_at_ms + ttl_ms
    return state.closed_at_ms + ttl_ms


def on_event(state: SessionState | None, env: Envelope, now_ms: int, ttl_ms: int) -> Step:
    event = env.event
    if event is None or env.session_id is None:
        return Step(state=state, changed=False)

    expired: Step | None = None
    if state is not None and env.received_at_ms >= deadline_ms(state, ttl_ms):
        expired = on_expiry(state, env.received_at_ms, ttl_ms, now_ms)
        state = None

    if state is None:
        half_type: HalfType = (
            SESSION_CREATED if isinstance(event, SessionCreated) else SESSION_ENDED
        )
        pending = PendingSession(
            session_id=env.session_id,
            event_type=half_type,
            message_id=env.message_id,
            digest=env.digest,
            received_at_ms=env.received_at_ms,
            first_seen_ms=now_ms,
            body=env.body,
            fields=fields_of(event),
        )
        return Step(
            state=pending,
            changed=True,
            outputs=expired.outputs if expired else (),
            pending_delta=1 + (expired.pending_delta if expired else 0),
        )

    if isinstance(state, CompletionMarker):
        first = state.created if isinstance(event, SessionCreated) else state.ended
        return Step(state=state, changed=False, duplicate=_classify(first, env))

    if state.event_type == env.event_type:
        return Step(
            state=state,
            changed=False,
            duplicate=_classify(HalfSeen(state.message_id, state.digest), env),
        )
    return _complete(state, env, event, now_ms)


def on_expiry(state: SessionState, horizon_ms: int, ttl_ms: int, now_ms: int) -> Step:
    """Expire a state whose deadline the stream time `horizon_ms` has reached; a no-op before it.

    `now_ms`, the worker's clock, is only reported (expiredAt).
    """
    if horizon_ms < deadline_ms(state, ttl_ms):
        return Step(state=state, changed=False)
    if isinstance(state, CompletionMarker):
        return Step(state=None, changed=True)
    event = pydantic_core.from_json(state.body)
    record = IncompleteSession.model_construct(
        sessionId=state.session_id,
        reason=(
            IncompleteReason.CREATED_WITHOUT_ENDED
            if state.event_type == SESSION_CREATED
            else IncompleteReason.ENDED_WITHOUT_CREATED
        ),
        firstSeenAt=format_ms(state.first_seen_ms),
        expiredAt=format_ms(now_ms),
        received=HalfRef(messageId=state.message_id, receivedAt=format_ms(state.received_at_ms)),
        event=event,
    )
    return Step(state=None, changed=True, outputs=(record,), pending_delta=-1)


def _classify(first: HalfSeen, env: Envelope) -> DuplicateKind:
    if env.message_id == first.message_id:
        return "retry"
    if env.digest == first.digest:
        return "resend"
    return "conflict"


def fields_of(event: SessionCreated | SessionEnded) -> HalfFields:
    """The fields of a validated half that outputs are built from (times in epoch microseconds)."""
    if isinstance(event, SessionEnded):
        return HalfFields(
            event.agentId,
            event.type,
            event.platform,
            event.direction,
            _us(event.createdAt),
            _us(event.endedAt),
            _us(event.lastActivityAt),
        )
    return HalfFields(
        event.agentId, event.type, event.platform, event.direction, _us(event.createdAt)
    )


def _us(moment: datetime) -> int:
    # Integer arithmetic: exact to the microsecond, as the datetime was.
    return (moment - _EPOCH) // _US


@dataclass(frozen=True, slots=True)
class _Half:
    """One half as pairing reads it: its fields and its JSON objects."""

    fields: HalfFields
    metadata: Any
    analysis: Any
    ref: HalfRef
    seen: HalfSeen


def _incoming(env: Envelope, event: SessionCreated | SessionEnded) -> _Half:
    analysis = event.analysis if isinstance(event, SessionEnded) else None
    return _Half(
        fields_of(event),
        event.metadata,
        analysis,
        HalfRef(messageId=env.message_id, receivedAt=format_ms(env.received_at_ms)),
        HalfSeen(env.message_id, env.digest),
    )


def _stored(pending: PendingSession) -> _Half:
    # The stored half passed validation when it arrived: its JSON is parsed, not validated again
    # (pydantic_core keeps integers of any size exact, as the validation did).
    body: dict[str, Any] = pydantic_core.from_json(pending.body)
    return _Half(
        pending.fields,
        body.get("metadata"),
        body.get("analysis"),
        HalfRef(messageId=pending.message_id, receivedAt=format_ms(pending.received_at_ms)),
        HalfSeen(pending.message_id, pending.digest),
    )


def _identity(half: _Half) -> tuple[tuple[str, object], ...]:
    """The identity fields (by output name) compared between the halves; created's win."""
    f = half.fields
    return (
        ("agentId", f.agent_id),
        ("type", f.type),
        ("platform", f.platform),
        ("direction", f.direction),
        ("createdAt", f.created_at_us),
        ("metadata", half.metadata),
    )


def _complete(
    pending: PendingSession, env: Envelope, event: SessionCreated | SessionEnded, now_ms: int
) -> Step:
    arriving, waiting = _incoming(env, event), _stored(pending)
    created, ended = (
        (arriving, waiting) if isinstance(event, SessionCreated) else (waiting, arriving)
    )
    c, e = created.fields, ended.fields
    if e.ended_at_us is None or e.last_activity_at_us is None:
        raise StateDecodeError("a session.ended half without its times")  # never validated so
    record = CompletedSession.model_construct(
        sessionId=pending.session_id,
        agentId=c.agent_id,
        type=c.type,
        platform=c.platform,
        direction=c.direction,
        createdAt=format_ms(c.created_at_us // 1000),
        endedAt=format_ms(e.ended_at_us // 1000),
        lastActivityAt=format_ms(e.last_activity_at_us // 1000),
        durationSeconds=(e.ended_at_us - c.created_at_us) / 1_000_000,
        metadata=created.metadata,
        analysis=ended.analysis,
        created=created.ref,
        ended=ended.ref,
        completedAt=format_ms(now_ms),
    )
    marker = CompletionMarker(
        session_id=pending.session_id,
        closed_at_ms=max(pending.received_at_ms, env.received_at_ms),
        created=created.seen,
        ended=ended.seen,
    )
    return Step(
        state=marker,
        changed=True,
        outputs=(record,),
        half_conflicts=tuple(
            name
            for (name, mine), (_, theirs) in zip(_identity(created), _identity(ended), strict=True)
            if mine != theirs
        ),
        pending_delta=-1,
        pairing_wait_ms=abs(env.received_at_ms - pending.received_at_ms),
    )


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
