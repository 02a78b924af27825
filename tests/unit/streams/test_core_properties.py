"""The pairing core's properties over any traffic a sender can produce."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core import PendingSession, SessionState, Step, deadline_ms, on_event, on_expiry
from streams.decode import decode
from streams.models import CompletedSession, IncompleteSession, encode_output
from streams.state_codec import decode_state, encode_state
from tests.unit.streams import samples

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
