"""The per-session state machine: dedup, created/ended pairing and expiry, free of Faust and Kafka."""

# Clocks. A half's TTL runs on stream time: from its received-at, the producer's clock when the
# webhook arrived (`received_at_ms`), never from when a worker got round to it. Whether the pair
# meets is then a fact about the traffic, not about the worker: a stall, a rebalance or a backlog
# older than the TTL pairs exactly the halves that arrived within TTL of each other. A completion
# marker expires TTL after the later half's received-at (`closed_at_ms`).
# on_event expires an overdue state first, as of the event's own received-at, exactly as a timer
# would have done had it run before the event. The timer (on_expiry) is given a stream-time
# horizon that the caller guarantees every earlier-received record of the partition has passed
# (streams/expiry.py, `Tick.horizon_ms`), so it never expires a half whose partner is waiting.
# The worker's clock (`now_ms`) only fills the report fields firstSeenAt, expiredAt, completedAt.

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

import orjson
import pydantic_core

from sessionflow.events import SESSION_CREATED, SESSION_ENDED
from streams.decode import Envelope
from streams.models import (
    CompletedSession,
    HalfRef,
    IncompleteReason,
    IncompleteSession,
    OutputRecord,
    SessionCreated,
    SessionEnded,
    format_dt,
    format_ms,
)

DuplicateKind: TypeAlias = Literal["retry", "resend", "conflict"]
HalfType: TypeAlias = Literal["session.created", "session.ended"]

# Identity fields compared between the halves; session.created's values win in the output.
IDENTITY_FIELDS: Final = ("agentId", "type", "platform", "direction", "createdAt", "metadata")

_STATE_VERSION: Final = 1
_PENDING: Final = "P"
_MARKER: Final = "M"


class StateDecodeError(ValueError):
    """Stored bytes that are not a SessionState written by encode_state."""


@dataclass(frozen=True, slots=True)
class HalfSeen:
    """Enough of a half to classify a late duplicate of it."""

    message_id: str
    digest: bytes


@dataclass(frozen=True, slots=True)
class PendingSession:
    """One half, waiting for its pair (or for the TTL)."""

    session_id: str
    event_type: HalfType
    message_id: str
    digest: bytes
    received_at_ms: int
    first_seen_ms: int
    body: bytes


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
    ignored_event_type: str | None = None
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
        return Step(state=state, changed=False, ignored_event_type=env.event_type)

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


def _complete(
    pending: PendingSession, env: Envelope, event: SessionCreated | SessionEnded, now_ms: int
) -> Step:
    # The stored half passed the same validation when it arrived, so this cannot fail.
    created: SessionCreated
    ended: SessionEnded
    if isinstance(event, SessionCreated):
        created = event
        ended = SessionEnded.model_validate_json(pending.body)
        created_ref = HalfRef(messageId=env.message_id, receivedAt=format_ms(env.received_at_ms))
        ended_ref = HalfRef(
            messageId=pending.message_id, receivedAt=format_ms(pending.received_at_ms)
        )
        created_seen = HalfSeen(env.message_id, env.digest)
        ended_seen = HalfSeen(pending.message_id, pending.digest)
    else:
        created = SessionCreated.model_validate_json(pending.body)
        ended = event
        created_ref = HalfRef(
            messageId=pending.message_id, receivedAt=format_ms(pending.received_at_ms)
        )
        ended_ref = HalfRef(messageId=env.message_id, receivedAt=format_ms(env.received_at_ms))
        created_seen = HalfSeen(pending.message_id, pending.digest)
        ended_seen = HalfSeen(env.message_id, env.digest)

    record = CompletedSession.model_construct(
        sessionId=pending.session_id,
        agentId=created.agentId,
        type=created.type,
        platform=created.platform,
        direction=created.direction,
        createdAt=format_dt(created.createdAt),
        endedAt=format_dt(ended.endedAt),
        lastActivityAt=format_dt(ended.lastActivityAt),
        durationSeconds=(ended.endedAt - created.createdAt).total_seconds(),
        metadata=created.metadata,
        analysis=ended.analysis,
        created=created_ref,
        ended=ended_ref,
        completedAt=format_ms(now_ms),
    )
    marker = CompletionMarker(
        session_id=pending.session_id,
        closed_at_ms=max(pending.received_at_ms, env.received_at_ms),
        created=created_seen,
        ended=ended_seen,
    )
    return Step(
        state=marker,
        changed=True,
        outputs=(record,),
        half_conflicts=tuple(
            name for name in IDENTITY_FIELDS if getattr(created, name) != getattr(ended, name)
        ),
        pending_delta=-1,
        pairing_wait_ms=abs(env.received_at_ms - pending.received_at_ms),
    )


# State codec: a JSON header line, then (pending only) the raw body bytes after one b"\n".
# orjson never writes a raw newline, and the body is kept verbatim: no escaping, exact round trip.


def encode_state(state: SessionState) -> bytes:
    if isinstance(state, PendingSession):
        head = orjson.dumps(
            [
                _STATE_VERSION,
                _PENDING,
                state.session_id,
                state.event_type,
                state.message_id,
                state.digest.hex(),
                state.received_at_ms,
                state.first_seen_ms,
            ]
        )
        return head + b"\n" + state.body
    return orjson.dumps(
        [
            _STATE_VERSION,
            _MARKER,
            state.session_id,
            state.closed_at_ms,
            state.created.message_id,
            state.created.digest.hex(),
            state.ended.message_id,
            state.ended.digest.hex(),
        ]
    )


def decode_state(data: bytes) -> SessionState:
    head, sep, body = data.partition(b"\n")
    try:
        fields = orjson.loads(head)
        version, kind, session_id, *rest = fields
        if version != _STATE_VERSION:
            raise StateDecodeError(f"unknown state version {version!r}")
        if kind == _PENDING and sep:
            event_type, message_id, digest, received_at_ms, first_seen_ms = rest
            if event_type not in (SESSION_CREATED, SESSION_ENDED):
                raise StateDecodeError(f"unknown half {event_type!r}")
            return PendingSession(
                session_id=session_id,
                event_type=event_type,
                message_id=message_id,
                digest=bytes.fromhex(digest),
                received_at_ms=received_at_ms,
                first_seen_ms=first_seen_ms,
                body=body,
            )
        if kind == _MARKER and not sep:
            closed_at_ms, c_id, c_digest, e_id, e_digest = rest
            return CompletionMarker(
                session_id=session_id,
                closed_at_ms=closed_at_ms,
                created=HalfSeen(c_id, bytes.fromhex(c_digest)),
                ended=HalfSeen(e_id, bytes.fromhex(e_digest)),
            )
    except StateDecodeError:
        raise
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise StateDecodeError(f"unreadable session state: {exc}") from exc
    raise StateDecodeError(f"unknown state kind {kind!r}")
