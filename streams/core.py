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

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias

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
