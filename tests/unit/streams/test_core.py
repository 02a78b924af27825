"""The pairing core: one example per rule, then properties over any traffic a sender can produce."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core import (
    CompletionMarker,
    HalfFields,
    HalfSeen,
    PendingSession,
    SessionState,
    StateDecodeError,
    Step,
    deadline_ms,
    decode_state,
    encode_state,
    on_event,
    on_expiry,
    stored_deadline_ms,
)
from streams.decode import Envelope, decode, digest_of
from streams.models import (
    CompletedSession,
    Direction,
    IncompleteSession,
    Platform,
    SessionType,
    encode_output,
)
from tests.unit.streams import samples

TTL = 172_800_000
R = samples.T0_MS  # received-at: stream time, which decides
T = R + 1_000  # the worker's clock in the examples, which is only reported


def _sid() -> str:
    return str(uuid.uuid4())


def _env(event: dict[str, Any], message_id: str, received_at_ms: int = samples.T0_MS) -> Envelope:
    return samples.envelope(event, message_id=message_id, received_at_ms=received_at_ms)


def _roundtrip(step: Step) -> Step:
    if step.state is not None:
        state = step.state
        assert decode_state(encode_state(state), state.session_id) == state
    return step


def _completed(step: Step) -> CompletedSession:
    (record,) = step.outputs
    assert isinstance(record, CompletedSession)
    # The core builds records without re-validation: the strict model must accept them.
    assert CompletedSession.model_validate_json(encode_output(record)) == record
    return record


def _incomplete(step: Step) -> IncompleteSession:
    (record,) = step.outputs
    assert isinstance(record, IncompleteSession)
    assert IncompleteSession.model_validate_json(encode_output(record)) == record
    return record


# Pairing ------------------------------------------------------------------------------------


def test_created_then_ended_completes_once() -> None:
    sid = _sid()
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    first = _roundtrip(on_event(None, _env(created, "msg_c", samples.T0_MS), T, TTL))
    assert isinstance(first.state, PendingSession)
    assert (first.changed, first.outputs, first.pending_delta) == (True, (), 1)

    second = _roundtrip(
        on_event(first.state, _env(ended, "msg_e", samples.T0_MS + 252_000), T + 5_000, TTL)
    )
    record = _completed(second)
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
    sid = _sid()
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    a = on_event(None, _env(created, "msg_c"), T, TTL)
    in_order = _completed(on_event(a.state, _env(ended, "msg_e"), T + 1, TTL))
    b = on_event(None, _env(ended, "msg_e"), T, TTL)
    reversed_ = _completed(on_event(b.state, _env(created, "msg_c"), T + 1, TTL))
    assert encode_output(in_order) == encode_output(reversed_)


def test_metadata_and_analysis_pass_through_byte_for_byte() -> None:
    sid = _sid()
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    first = on_event(None, _env(created, "msg_c"), T, TTL)
    out = encode_output(_completed(on_event(first.state, _env(ended, "msg_e"), T, TTL)))
    compact = samples.to_bytes
    assert compact(created["metadata"]) in out
    assert compact(ended["analysis"]) in out
    assert b"123456789012345678901234567890" in out


def test_identity_comes_from_created_and_disagreements_are_reported() -> None:
    sid = _sid()
    created = samples.session_created(sid)
    ended = samples.session_ended(
        sid,
        agentId=str(uuid.uuid4()),
        type="CHAT",
        metadata={"sessionVariables": {"taskId": "other"}},
        createdAt="2025-03-14T10:26:53.589+01:00",  # the same instant, written differently
    )
    first = on_event(None, _env(ended, "msg_e"), T, TTL)
    step = on_event(first.state, _env(created, "msg_c"), T, TTL)
    record = _completed(step)
    assert step.half_conflicts == ("agentId", "type", "metadata")
    assert record.agentId == samples.AGENT_ID
    assert record.type == "VOICE"
    assert record.metadata == created["metadata"]


def test_duration_is_ended_at_minus_created_at() -> None:
    sid = _sid()
    created = samples.session_created(sid)
    ended = samples.session_ended(sid, duration=timedelta(hours=1, milliseconds=1))
    first = on_event(None, _env(created, "msg_c"), T, TTL)
    assert _completed(on_event(first.state, _env(ended, "msg_e"), T, TTL)).durationSeconds == (
        3600.001
    )


# Duplicates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("half", ["created", "ended"])
def test_duplicates_of_a_pending_half_change_nothing(half: str) -> None:
    sid = _sid()
    build = samples.session_created if half == "created" else samples.session_ended
    event = build(sid)
    pending = on_event(None, _env(event, "msg_1"), T, TTL).state
    assert pending is not None

    retry = on_event(pending, _env(event, "msg_1"), T + 1, TTL)
    resend = on_event(pending, _env(event, "msg_2"), T + 2, TTL)
    changed = build(sid, metadata={"sessionVariables": {"taskId": "changed"}})
    conflict = on_event(pending, _env(changed, "msg_3"), T + 3, TTL)
    for step, kind in ((retry, "retry"), (resend, "resend"), (conflict, "conflict")):
        assert step == Step(state=pending, changed=False, duplicate=kind)  # type: ignore[arg-type]


def test_first_wins_over_a_conflicting_duplicate() -> None:
    sid = _sid()
    ended = samples.session_ended(sid)
    other = samples.session_ended(sid, analysis={"summary": "a later, different analysis"})
    state = on_event(None, _env(ended, "msg_e1"), T, TTL).state
    state = on_event(state, _env(other, "msg_e2"), T, TTL).state
    step = on_event(state, _env(samples.session_created(sid), "msg_c"), T, TTL)
    record = _completed(step)
    assert record.analysis == ended["analysis"]
    assert record.ended["messageId"] == "msg_e1"


def test_late_duplicates_after_completion_are_classified_and_dropped() -> None:
    sid = _sid()
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    state = on_event(None, _env(created, "msg_c"), T, TTL).state
    marker = on_event(state, _env(ended, "msg_e"), T, TTL).state
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
        step = on_event(marker, _env(event, message_id), T + TTL - 1, TTL)
        assert step == Step(state=marker, changed=False, duplicate=kind)  # type: ignore[arg-type]


# Expiry -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("half", "reason"),
    [("created", "created_without_ended"), ("ended", "ended_without_created")],
)
def test_unpaired_half_expires_once_after_the_ttl(half: str, reason: str) -> None:
    sid = _sid()
    event = (samples.session_created if half == "created" else samples.session_ended)(sid)
    raw = samples.to_bytes(event)
    state = on_event(None, _env(event, "msg_1", samples.T0_MS), T, TTL).state
    assert state is not None
    assert deadline_ms(state, TTL) == R + TTL

    assert on_expiry(state, R + TTL - 1, TTL, T + TTL) == Step(state=state, changed=False)
    step = on_expiry(state, R + TTL, TTL, T + TTL)
    record = _incomplete(step)
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
    sid = _sid()
    state = on_event(None, _env(samples.session_created(sid), "msg_c", R + 10), T, TTL).state
    marker = on_event(state, _env(samples.session_ended(sid), "msg_e", R), T + 10, TTL).state
    assert isinstance(marker, CompletionMarker)
    assert deadline_ms(marker, TTL) == R + 10 + TTL
    assert on_expiry(marker, R + 9 + TTL, TTL, T) == Step(state=marker, changed=False)
    assert on_expiry(marker, R + 10 + TTL, TTL, T) == Step(state=None, changed=True)


def test_overdue_pending_expires_before_the_late_half_is_taken() -> None:
    # Same outcome as if the timer had run first: the outcome cannot depend on timer jitter.
    sid = _sid()
    state = on_event(None, _env(samples.session_created(sid), "msg_c"), T, TTL).state
    late = _env(samples.session_ended(sid), "msg_e", R + TTL)
    step = _roundtrip(on_event(state, late, T + 2 * TTL, TTL))
    assert _incomplete(step).reason == "created_without_ended"
    assert _incomplete(step).expiredAt == "2025-03-18T09:26:54.589Z"  # the worker's clock
    assert isinstance(step.state, PendingSession)
    assert step.state.event_type == "session.ended"
    assert step.state.first_seen_ms == T + 2 * TTL
    assert (step.changed, step.pending_delta) == (True, 0)


def test_halves_received_within_the_ttl_pair_however_late_the_worker_sees_them() -> None:
    # A stall, a rebalance or a backlog longer than the TTL: stream time has not moved.
    sid = _sid()
    state = on_event(None, _env(samples.session_created(sid), "msg_c"), T, TTL).state
    step = on_event(state, _env(samples.session_ended(sid), "msg_e", R + TTL - 1), T + 5 * TTL, TTL)
    record = _completed(step)
    assert record.completedAt == "2025-03-24T09:26:54.589Z"  # the worker's clock
    assert step.pairing_wait_ms == TTL - 1


def test_half_after_expiry_starts_a_new_pending_session() -> None:
    sid = _sid()
    created = samples.session_created(sid)
    state = on_event(None, _env(created, "msg_c"), T, TTL).state
    assert state is not None
    assert on_expiry(state, R + TTL, TTL, T + TTL).state is None
    again = on_event(None, _env(created, "msg_c", R + TTL + 1), T + TTL + 1, TTL)
    assert isinstance(again.state, PendingSession)
    assert (again.changed, again.duplicate, again.pending_delta) == (True, None, 1)


def test_duplicate_after_an_overdue_marker_starts_a_new_pending_session() -> None:
    sid = _sid()
    state = on_event(None, _env(samples.session_created(sid), "msg_c"), T, TTL).state
    marker = on_event(state, _env(samples.session_ended(sid), "msg_e"), T, TTL).state
    step = on_event(marker, _env(samples.session_ended(sid), "msg_e", R + TTL), T, TTL)
    assert step.outputs == ()
    assert step.duplicate is None
    assert isinstance(step.state, PendingSession)
    assert step.pending_delta == 1


# Other events -------------------------------------------------------------------------------


@pytest.mark.parametrize("with_state", [False, True])
def test_other_event_types_are_only_reported(with_state: bool) -> None:
    sid = _sid()
    state = (
        on_event(None, _env(samples.session_created(sid), "msg_c"), T, TTL).state
        if with_state
        else None
    )
    raw = orjson.dumps({"eventType": "session.updated", "id": sid, "changedFields": ["state"]})
    env = decode(raw, samples.headers("msg_u", "session.updated"), T)
    assert on_event(state, env, T + TTL * 5, TTL) == Step(state=state, changed=False)


# State codec --------------------------------------------------------------------------------


def test_state_codec_round_trips_both_kinds() -> None:
    pending = PendingSession(
        session_id=_sid(),
        event_type="session.ended",
        message_id='msg_é\n"x"',
        digest=bytes(range(8)),
        received_at_ms=1,
        first_seen_ms=2**53,
        body=b'{"a":\n1}\n\n',
        fields=HalfFields(
            _sid(), SessionType.VOICE, Platform.PHONE, Direction.INBOUND, -1, 2**62, 0
        ),
    )
    marker = CompletionMarker(
        session_id=_sid(),
        closed_at_ms=T,
        created=HalfSeen("msg_c", b"\x00" * 8),
        ended=HalfSeen("msg_é", b"\xff" * 8),
    )
    for state in (pending, marker):
        assert decode_state(encode_state(state), state.session_id) == state


def test_the_session_id_is_the_key_not_part_of_the_value() -> None:
    sid = _sid()
    pending = on_event(None, _env(samples.session_created(sid), "msg_1"), T, TTL).state
    assert pending is not None
    assert sid.encode() not in encode_state(pending).partition(b"\n")[0]


def test_completion_marker_is_a_few_dozen_bytes() -> None:
    sid = _sid()
    ended = samples.session_ended(sid)
    pending = on_event(None, _env(ended, "msg_2dQp5e6aBcDeFgHiJkLmNoPq"), T, TTL).state
    assert pending is not None
    assert len(encode_state(pending)) > len(samples.to_bytes(ended))
    created = samples.session_created(sid)
    done = on_event(pending, _env(created, "msg_2dQp5e6aBcDeFgHiJkLmNoPr"), T, TTL).state
    assert done is not None
    # Two Svix message ids (28 characters each), two digests, the time: nothing else.
    assert len(encode_state(done)) == 2 + 8 + 8 + 8 + 2 + 2 * 28


# A table written by sessionflow before state version 2 (the pending half repeated the session
# id and kept the body only; markers were JSON).
def _v1_pending(sid: str, event: dict[str, Any], message_id: str) -> bytes:
    body = samples.to_bytes(event)
    head = [1, "P", sid, event["eventType"], message_id, digest_of(body).hex(), samples.T0_MS, T]
    return orjson.dumps(head) + b"\n" + body


def test_a_table_written_in_version_1_is_read_and_pairs_as_version_2_does() -> None:
    sid = _sid()
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    old = decode_state(_v1_pending(sid, ended, "msg_e"), sid)
    new = on_event(None, _env(ended, "msg_e"), T, TTL).state
    assert isinstance(old, PendingSession)
    assert isinstance(new, PendingSession)
    assert old.fields == new.fields
    assert old.body == new.body
    from_old = _completed(on_event(old, _env(created, "msg_c"), T, TTL))
    from_new = _completed(on_event(new, _env(created, "msg_c"), T, TTL))
    assert from_old.__dict__ == from_new.__dict__
    marker = decode_state(orjson.dumps([1, "M", sid, T, "msg_c", "00" * 8, "msg_e", "ff" * 8]), sid)
    assert marker == CompletionMarker(
        sid, T, HalfSeen("msg_c", bytes(8)), HalfSeen("msg_e", b"\xff" * 8)
    )
    # Written again (the next change of the session), a version-1 state is version 2.
    assert encode_state(old) == encode_state(new)


def test_stored_deadline_reads_what_decoding_would_say_in_every_version() -> None:
    sid = _sid()
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    pending = on_event(None, _env(ended, "msg_e"), T, TTL).state
    assert pending is not None
    done = on_event(pending, _env(created, "msg_c"), T + 5, TTL).state
    assert done is not None
    v1_marker = orjson.dumps([1, "M", sid, T, "msg_c", "00" * 8, "msg_e", "ff" * 8])
    for data in (
        encode_state(pending),
        encode_state(done),
        _v1_pending(sid, ended, "m"),
        v1_marker,
    ):
        state = decode_state(data, sid)
        expected = (deadline_ms(state, TTL), isinstance(state, PendingSession))
        assert stored_deadline_ms(data, sid, TTL) == expected
    with pytest.raises(StateDecodeError):
        stored_deadline_ms(b'[2,"P",oops\n{}', sid, TTL)
    with pytest.raises(StateDecodeError):
        stored_deadline_ms(b"\x02M" + bytes(3), sid, TTL)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"{}",
        b"[]",
        b'[3,"P"]\n{}',
        b'[2,"M","s",1,"a","00","b","00"]',
        b'[1,"X","s"]',
        b'[1,"M","s",1,"a","zz","b","00"]',
        b'[1,"M","s",1]',
        b'[1,"P","s","session.created","m","00",1,2]',  # pending without a body
        b'[1,"P","s","usage.updated","m","00",1,2]\n{}',
        b'[1,"P","s","session.created","m","00",1,2]\n{"not":"a session"}',
        b'[2,"P","session.created","m","00",1,2,"a","VOICE","PHONE","INBOUND",1,5,6]\n{}',
        b'[2,"P","session.ended","m","00",1,2,"a","VOICE","PHONE","INBOUND",1,null,null]\n{}',
        b'[2,"P","session.created","m","00",1,2,"a","ROCKET","PHONE","INBOUND",1,null,null]\n{}',
        b"\x02M" + bytes(10),  # a truncated marker
        b"\x02M" + bytes(24) + b"\x00\x09ab",  # a message id longer than what follows
    ],
)
def test_decode_state_rejects_foreign_bytes(data: bytes) -> None:
    with pytest.raises(StateDecodeError):
        decode_state(data, "s")


# Properties ---------------------------------------------------------------------------------

PTTL = 1_000_000  # a short TTL keeps the generated clocks readable


@dataclass
class Delivery:
    session_id: str
    half: str
    message_id: str
    body: bytes
    at_ms: int


@dataclass
class SessionPlan:
    session_id: str
    halves: tuple[str, ...]
    deliveries: list[Delivery] = field(default_factory=list)


def _body(session_id: str, half: str, variant: int) -> bytes:
    if half == "session.created":
        event = samples.session_created(session_id)
        if variant:
            event["metadata"] = samples.metadata(taskId=f"variant-{variant}")
    else:
        event = samples.session_ended(session_id)
        if variant:
            event["analysis"] = {**samples.analysis(), "summary": f"variant {variant}"}
    return samples.to_bytes(event)


@st.composite
def traffic(draw: st.DrawFn) -> tuple[list[SessionPlan], list[Delivery | int]]:
    """Sessions with duplicated, reordered halves, each session's events within the TTL of its
    first, sessions spread over several TTLs, and timer ticks anywhere in between."""
    plans: list[SessionPlan] = []
    deliveries: list[Delivery] = []
    for index in range(draw(st.integers(1, 6))):
        sid = str(uuid.UUID(int=index + 1))
        halves = draw(
            st.sampled_from(
                [("session.created", "session.ended"), ("session.created",), ("session.ended",)]
            )
        )
        plan = SessionPlan(sid, halves)
        start = draw(st.integers(0, 3 * PTTL))
        for half in halves:
            copies = draw(st.lists(st.sampled_from(["retry", "resend", "conflict"]), max_size=3))
            message_id, variant = f"msg_{index}_{half}_0", 0
            versions = [(message_id, variant)]
            for n, copy in enumerate(copies, start=1):
                if copy == "resend":
                    message_id = f"msg_{index}_{half}_{n}"
                elif copy == "conflict":
                    message_id, variant = f"msg_{index}_{half}_{n}", n
                versions.append((message_id, variant))
            for message_id, variant in versions:
                at = start + draw(st.integers(0, PTTL - 1))
                plan.deliveries.append(
                    Delivery(sid, half, message_id, _body(sid, half, variant), at)
                )
        plans.append(plan)
        deliveries.extend(plan.deliveries)

    order = draw(st.permutations(range(len(deliveries))))
    shuffled = sorted((deliveries[i] for i in order), key=lambda d: d.at_ms)
    ticks = draw(st.lists(st.integers(0, 5 * PTTL), max_size=6))
    others = draw(st.lists(st.integers(0, 4 * PTTL), max_size=3))
    timeline: list[tuple[int, int, Delivery | int]] = [(d.at_ms, 0, d) for d in shuffled]
    timeline += [(t, 1, t) for t in ticks]
    timeline += [(t, 0, -1 - t) for t in others]  # a non-session event at time t
    timeline.sort(key=lambda item: (item[0], item[1]))
    return plans, [item[2] for item in timeline]


def _expected_kind(first: Delivery, later: Delivery) -> str:
    if later.message_id == first.message_id:
        return "retry"
    return "resend" if later.body == first.body else "conflict"


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(traffic(), st.lists(st.integers(0, 3 * PTTL), min_size=1, max_size=5))
def test_any_traffic_yields_exactly_one_record_per_session(
    scenario: tuple[list[SessionPlan], list[Delivery | int]], stalls: list[int]
) -> None:
    # `stalls`: how far behind the traffic the worker runs, changing as it goes (a backlog, a
    # rebalance, a restore); up to three TTLs. The outcome must not depend on it.
    plans, timeline = scenario
    table: dict[str, bytes] = {}  # what the changelog-backed table would hold
    outputs: list[CompletedSession | IncompleteSession] = []
    firsts: dict[tuple[str, str], Delivery] = {}
    duplicates: list[tuple[str, str | None]] = []
    expected_duplicates: list[tuple[str, str | None]] = []
    pending_gauge = 0
    clock = 0

    def apply(session_id: str, step: Step, before: SessionState | None) -> None:
        nonlocal pending_gauge
        outputs.extend(step.outputs)
        pending_gauge += step.pending_delta
        if not step.changed:
            assert step.state == before
        elif step.state is None:
            del table[session_id]
        else:
            table[session_id] = encode_state(step.state)
            assert decode_state(table[session_id], session_id) == step.state
        assert pending_gauge == sum(
            isinstance(decode_state(v, k), PendingSession) for k, v in table.items()
        )

    def tick(horizon: int, worker_now: int) -> None:
        for session_id in list(table):
            state = decode_state(table[session_id], session_id)
            step = on_expiry(state, horizon, PTTL, worker_now)
            assert step.changed == (horizon >= deadline_ms(state, PTTL))
            apply(session_id, step, state)

    for n, item in enumerate(timeline):
        stall = stalls[n % len(stalls)]
        if isinstance(item, int):
            if item >= 0:
                clock = max(clock, item)
                tick(clock, clock + stall)
            else:
                raw = orjson.dumps({"eventType": "usage.updated", "totals": {}})
                env = decode(raw, samples.headers("msg_usage", "usage.updated"), clock)
                assert on_event(None, env, clock, PTTL) == Step(state=None, changed=False)
            continue
        clock = max(clock, item.at_ms)
        key = (item.session_id, item.half)
        if key in firsts:
            expected_duplicates.append((item.message_id, _expected_kind(firsts[key], item)))
        else:
            firsts[key] = item
        env = decode(item.body, samples.headers(item.message_id, item.half, clock), clock)
        assert env.session_id == item.session_id
        before = (
            decode_state(table[item.session_id], item.session_id)
            if item.session_id in table
            else None
        )
        step = on_event(before, env, clock + stall, PTTL)
        if step.duplicate is not None:
            duplicates.append((item.message_id, step.duplicate))
        apply(item.session_id, step, before)

    tick(clock + 2 * PTTL, clock + 5 * PTTL)
    assert table == {}
    assert pending_gauge == 0
    assert duplicates == expected_duplicates

    by_session = Counter((r.sessionId, type(r).__name__) for r in outputs)
    for plan in plans:
        sid = plan.session_id
        mine = [r for r in outputs if r.sessionId == sid]
        if len(plan.halves) == 2:
            assert by_session == by_session | {(sid, "CompletedSession"): 1}
            (record,) = mine
            assert isinstance(record, CompletedSession)
            created = firsts[(sid, "session.created")]
            ended = firsts[(sid, "session.ended")]
            assert record.created["messageId"] == created.message_id
            assert record.ended["messageId"] == ended.message_id
            assert record.metadata == json.loads(created.body)["metadata"]
            assert record.analysis == json.loads(ended.body)["analysis"]
        else:
            (record,) = mine
            assert isinstance(record, IncompleteSession)
            half = plan.halves[0]
            first = firsts[(sid, half)]
            assert record.reason == (
                "created_without_ended" if half == "session.created" else "ended_without_created"
            )
            assert record.received["messageId"] == first.message_id
            assert record.event == json.loads(first.body)
            assert first.body in encode_output(record)
