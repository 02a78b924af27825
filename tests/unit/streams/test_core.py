"""The pairing core: one example per rule (pairing, duplicates, expiry, other events)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import orjson
import pytest

from streams.core import CompletionMarker, PendingSession, Step, deadline_ms, on_event, on_expiry
from streams.decode import decode
from streams.models import encode_output
from tests.unit.streams import samples
from tests.unit.streams.steps import (
    TTL,
    R,
    T,
    completed_of,
    envelope_of,
    incomplete_of,
    new_session_id,
    round_trip,
)

# Pairing ------------------------------------------------------------------------------------


def test_created_then_ended_completes_once() -> None:
    sid = new_session_id()
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    first = round_trip(on_event(None, envelope_of(created, "msg_c", samples.T0_MS), T, TTL))
    assert isinstance(first.state, PendingSession)
    assert (first.changed, first.outputs, first.pending_delta) == (True, (), 1)

    second = round_trip(
        on_event(first.state, envelope_of(ended, "msg_e", samples.T0_MS + 252_000), T + 5_000, TTL)
    )
    record = completed_of(second)
    assert second.changed
    assert second.pending_delta == -1
    assert second.pairing_wait_ms == 252_000  # received-at to received-at
    assert second.half_conflicts == ()
    assert isinstance(second.state, CompletionMarker)
    out = json.loads(encode_output(record))
    assert out == {
        "schemaVersion": 1,
        "sessionId": sid,
        "agentId": samples.AGENT_ID,
        "type": "VOICE",
        "platform": "PHONE",
        "direction": "OUTBOUND",
        "createdAt": "2025-03-14T09:26:53.589Z",
        "endedAt": "2025-03-14T09:31:05.839Z",
        "lastActivityAt": "2025-03-14T09:31:02.839Z",
        "durationSeconds": 252.25,
        "metadata": created["metadata"],
        "analysis": ended["analysis"],
        "created": {"messageId": "msg_c", "receivedAt": "2025-03-14T09:26:53.589Z"},
        "ended": {"messageId": "msg_e", "receivedAt": "2025-03-14T09:31:05.589Z"},
        "completedAt": "2025-03-14T09:26:59.589Z",
    }


def test_ended_before_created_gives_the_same_record() -> None:
    sid = new_session_id()
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    a = on_event(None, envelope_of(created, "msg_c"), T, TTL)
    in_order = completed_of(on_event(a.state, envelope_of(ended, "msg_e"), T + 1, TTL))
    b = on_event(None, envelope_of(ended, "msg_e"), T, TTL)
    reversed_ = completed_of(on_event(b.state, envelope_of(created, "msg_c"), T + 1, TTL))
    assert encode_output(in_order) == encode_output(reversed_)


def test_metadata_and_analysis_pass_through_byte_for_byte() -> None:
    sid = new_session_id()
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    first = on_event(None, envelope_of(created, "msg_c"), T, TTL)
    out = encode_output(completed_of(on_event(first.state, envelope_of(ended, "msg_e"), T, TTL)))
    compact = samples.to_bytes
    assert compact(created["metadata"]) in out
    assert compact(ended["analysis"]) in out
    assert b"123456789012345678901234567890" in out


def test_identity_comes_from_created_and_disagreements_are_reported() -> None:
    sid = new_session_id()
    created = samples.session_created(sid)
    ended = samples.session_ended(
        sid,
        agentId=str(uuid.uuid4()),
        type="CHAT",
        metadata={"sessionVariables": {"taskId": "other"}},
        createdAt="2025-03-14T10:26:53.589+01:00",  # the same instant, written differently
    )
    first = on_event(None, envelope_of(ended, "msg_e"), T, TTL)
    step = on_event(first.state, envelope_of(created, "msg_c"), T, TTL)
    record = completed_of(step)
    assert step.half_conflicts == ("agentId", "type", "metadata")
    assert record.agentId == samples.AGENT_ID
    assert record.type == "VOICE"
    assert record.metadata == created["metadata"]


def test_duration_is_ended_at_minus_created_at() -> None:
    sid = new_session_id()
    created = samples.session_created(sid)
    ended = samples.session_ended(sid, duration=timedelta(hours=1, milliseconds=1))
    first = on_event(None, envelope_of(created, "msg_c"), T, TTL)
    assert completed_of(
        on_event(first.state, envelope_of(ended, "msg_e"), T, TTL)
    ).durationSeconds == (3600.001)


# Duplicates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("half", ["created", "ended"])
def test_duplicates_of_a_pending_half_change_nothing(half: str) -> None:
    sid = new_session_id()
    build = samples.session_created if half == "created" else samples.session_ended
    event = build(sid)
    pending = on_event(None, envelope_of(event, "msg_1"), T, TTL).state
    assert pending is not None

    retry = on_event(pending, envelope_of(event, "msg_1"), T + 1, TTL)
    resend = on_event(pending, envelope_of(event, "msg_2"), T + 2, TTL)
    changed = build(sid, metadata={"sessionVariables": {"taskId": "changed"}})
    conflict = on_event(pending, envelope_of(changed, "msg_3"), T + 3, TTL)
    for step, kind in ((retry, "retry"), (resend, "resend"), (conflict, "conflict")):
        assert step == Step(state=pending, changed=False, duplicate=kind)  # type: ignore[arg-type]


def test_first_wins_over_a_conflicting_duplicate() -> None:
    sid = new_session_id()
    ended = samples.session_ended(sid)
    other = samples.session_ended(sid, analysis={"summary": "a later, different analysis"})
    state = on_event(None, envelope_of(ended, "msg_e1"), T, TTL).state
    state = on_event(state, envelope_of(other, "msg_e2"), T, TTL).state
    step = on_event(state, envelope_of(samples.session_created(sid), "msg_c"), T, TTL)
    record = completed_of(step)
    assert record.analysis == ended["analysis"]
    assert record.ended["messageId"] == "msg_e1"


def test_late_duplicates_after_completion_are_classified_and_dropped() -> None:
    sid = new_session_id()
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    state = on_event(None, envelope_of(created, "msg_c"), T, TTL).state
    marker = on_event(state, envelope_of(ended, "msg_e"), T, TTL).state
    assert isinstance(marker, CompletionMarker)
    changed = samples.session_ended(sid, endedAt="2025-03-14T09:40:00.000Z")
    cases = [
        (created, "msg_c", "retry"),
        (created, "msg_c2", "resend"),
        (ended, "msg_e", "retry"),
        (ended, "msg_e2", "resend"),
        (changed, "msg_e3", "conflict"),
    ]
    for event, message_id, kind in cases:
        step = on_event(marker, envelope_of(event, message_id), T + TTL - 1, TTL)
        assert step == Step(state=marker, changed=False, duplicate=kind)  # type: ignore[arg-type]


# Expiry -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("half", "reason"),
    [("created", "created_without_ended"), ("ended", "ended_without_created")],
)
def test_unpaired_half_expires_once_after_the_ttl(half: str, reason: str) -> None:
    sid = new_session_id()
    event = (samples.session_created if half == "created" else samples.session_ended)(sid)
    raw = samples.to_bytes(event)
    state = on_event(None, envelope_of(event, "msg_1", samples.T0_MS), T, TTL).state
    assert state is not None
    assert deadline_ms(state, TTL) == R + TTL

    assert on_expiry(state, R + TTL - 1, TTL, T + TTL) == Step(state=state, changed=False)
    step = on_expiry(state, R + TTL, TTL, T + TTL)
    record = incomplete_of(step)
    assert (step.state, step.changed, step.pending_delta) == (None, True, -1)
    out = encode_output(record)
    assert json.loads(out) == {
        "schemaVersion": 1,
        "sessionId": sid,
        "reason": reason,
        "firstSeenAt": "2025-03-14T09:26:54.589Z",
        "expiredAt": "2025-03-16T09:26:54.589Z",
        "received": {"messageId": "msg_1", "receivedAt": "2025-03-14T09:26:53.589Z"},
        "event": event,
    }
    # The event is exactly as received: same keys in the same order, same numbers.
    assert raw in out


def test_completion_marker_is_deleted_ttl_after_the_later_half_without_output() -> None:
    sid = new_session_id()
    state = on_event(None, envelope_of(samples.session_created(sid), "msg_c", R + 10), T, TTL).state
    marker = on_event(state, envelope_of(samples.session_ended(sid), "msg_e", R), T + 10, TTL).state
    assert isinstance(marker, CompletionMarker)
    assert deadline_ms(marker, TTL) == R + 10 + TTL
    assert on_expiry(marker, R + 9 + TTL, TTL, T) == Step(state=marker, changed=False)
    assert on_expiry(marker, R + 10 + TTL, TTL, T) == Step(state=None, changed=True)


def test_overdue_pending_expires_before_the_late_half_is_taken() -> None:
    # Same outcome as if the timer had run first: the outcome cannot depend on timer jitter.
    sid = new_session_id()
    state = on_event(None, envelope_of(samples.session_created(sid), "msg_c"), T, TTL).state
    late = envelope_of(samples.session_ended(sid), "msg_e", R + TTL)
    step = round_trip(on_event(state, late, T + 2 * TTL, TTL))
    assert incomplete_of(step).reason == "created_without_ended"
    assert incomplete_of(step).expiredAt == "2025-03-18T09:26:54.589Z"  # the worker's clock
    assert isinstance(step.state, PendingSession)
    assert step.state.event_type == "session.ended"
    assert step.state.first_seen_ms == T + 2 * TTL
    assert (step.changed, step.pending_delta) == (True, 0)


def test_halves_received_within_the_ttl_pair_however_late_the_worker_sees_them() -> None:
    # A stall, a rebalance or a backlog longer than the TTL: stream time has not moved.
    sid = new_session_id()
    state = on_event(None, envelope_of(samples.session_created(sid), "msg_c"), T, TTL).state
    step = on_event(
        state, envelope_of(samples.session_ended(sid), "msg_e", R + TTL - 1), T + 5 * TTL, TTL
    )
    record = completed_of(step)
    assert record.completedAt == "2025-03-24T09:26:54.589Z"  # the worker's clock
    assert step.pairing_wait_ms == TTL - 1


def test_half_after_expiry_starts_a_new_pending_session() -> None:
    sid = new_session_id()
    created = samples.session_created(sid)
    state = on_event(None, envelope_of(created, "msg_c"), T, TTL).state
    assert state is not None
    assert on_expiry(state, R + TTL, TTL, T + TTL).state is None
    again = on_event(None, envelope_of(created, "msg_c", R + TTL + 1), T + TTL + 1, TTL)
    assert isinstance(again.state, PendingSession)
    assert (again.changed, again.duplicate, again.pending_delta) == (True, None, 1)


def test_duplicate_after_an_overdue_marker_starts_a_new_pending_session() -> None:
    sid = new_session_id()
    state = on_event(None, envelope_of(samples.session_created(sid), "msg_c"), T, TTL).state
    marker = on_event(state, envelope_of(samples.session_ended(sid), "msg_e"), T, TTL).state
    step = on_event(marker, envelope_of(samples.session_ended(sid), "msg_e", R + TTL), T, TTL)
    assert step.outputs == ()
    assert step.duplicate is None
    assert isinstance(step.state, PendingSession)
    assert step.pending_delta == 1


# Other events -------------------------------------------------------------------------------


@pytest.mark.parametrize("with_state", [False, True])
def test_other_event_types_are_only_reported(with_state: bool) -> None:
    sid = new_session_id()
    state = (
        on_event(None, envelope_of(samples.session_created(sid), "msg_c"), T, TTL).state
        if with_state
        else None
    )
    raw = orjson.dumps({"eventType": "session.updated", "id": sid, "changedFields": ["state"]})
    env = decode(raw, samples.headers("msg_u", "session.updated"), T)
    assert on_event(state, env, T + TTL * 5, TTL) == Step(state=state, changed=False)
