"""The traffic model: realistic bodies, exact shares, and expectations a correct consumer meets."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli import traffic
from cli.traffic import DeliveryKind, Plan
from sessionflow.events import PLANNED_EVENT_TYPES, SESSION_CREATED, SESSION_ENDED
from streams.models import IncompleteReason

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
E164 = re.compile(r"^\+[1-9]\d{7,14}$")
MSG_ID = re.compile(r"^msg_[0-9A-Za-z]{27}$")
KNOWN_INTENTS = {
    "book_appointment",
    "reschedule_appointment",
    "cancel_appointment",
    "billing_question",
    "payment_issue",
    "order_status",
    "technical_support",
    "account_access",
    "product_information",
    "complaint",
    "sales_inquiry",
    "callback_request",
}


# The mix a test here starts from.
MIX = traffic.Mix(
    retry_share=0.1, resend_share=0.05, reorder_share=0.2, half_only_share=0.1, planned_share=0.1
)


def make(sessions: int = 200, *, seed: int = 7, **shares: float) -> Plan:
    return traffic.plan(sessions, seed=seed, now=NOW, mix=replace(MIX, **shares))


def consume(p: Plan) -> tuple[set[str], dict[str, IncompleteReason], int]:
    """A reference consumer: dedup by message id, session events by (eventType, id), pair.

    Planned-type events are distinct by their bytes (a resend repeats them; two
    `session.updated` of one session share (eventType, id) yet are different events).
    """
    seen_messages: set[str] = set()
    seen_events: set[tuple[str, str]] = set()
    planned_bodies: set[bytes] = set()
    halves: dict[str, set[str]] = {}
    planned = 0
    for d in p.deliveries:
        if d.message_id in seen_messages:
            continue
        seen_messages.add(d.message_id)
        event = orjson.loads(d.body)
        if event["eventType"] in (SESSION_CREATED, SESSION_ENDED):
            key = (event["eventType"], event["id"])
            if key not in seen_events:
                seen_events.add(key)
                halves.setdefault(event["id"], set()).add(event["eventType"])
        elif d.body not in planned_bodies:
            planned_bodies.add(d.body)
            planned += 1
    complete = {s for s, h in halves.items() if len(h) == 2}
    incomplete = {
        s: IncompleteReason.CREATED_WITHOUT_ENDED
        if SESSION_CREATED in h
        else IncompleteReason.ENDED_WITHOUT_CREATED
        for s, h in halves.items()
        if len(h) == 1
    }
    return complete, incomplete, planned


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    assert make(seed=3) == make(seed=3)
    assert make(seed=3).deliveries != make(seed=4).deliveries


def test_expected_counts_follow_the_shares() -> None:
    p = make(200, half_only_share=0.1, reorder_share=0.25, retry_share=0.1, resend_share=0.05)
    exp = p.expectations
    assert len(exp.incomplete) == 20
    assert len(exp.complete) == 180
    assert exp.complete.isdisjoint(exp.incomplete)
    kinds = Counter(d.kind for d in p.deliveries)
    base = kinds[DeliveryKind.ORIGINAL]
    assert base == 2 * 180 + 20 + exp.planned_events
    assert exp.planned_events == round(0.1 * (2 * 180 + 20))
    assert kinds[DeliveryKind.RETRY] == round(0.1 * base)
    assert kinds[DeliveryKind.RESEND] == round(0.05 * base)
    assert exp.planned_deliveries == sum(
        1 for d in p.deliveries if d.event_type in PLANNED_EVENT_TYPES
    )


@settings(max_examples=40, deadline=None)
@given(
    sessions=st.integers(0, 40),
    seed=st.integers(0, 2**32),
    shares=st.tuples(*[st.floats(0, 1)] * 5),
)
def test_a_correct_consumer_gets_exactly_the_expectations(
    sessions: int, seed: int, shares: tuple[float, float, float, float, float]
) -> None:
    retry, resend, reorder, half, planned = shares
    p = traffic.plan(
        sessions,
        seed=seed,
        now=NOW,
        mix=traffic.Mix(
            retry_share=retry,
            resend_share=resend,
            reorder_share=reorder,
            half_only_share=half,
            planned_share=planned,
        ),
    )
    complete, incomplete, n_planned = consume(p)
    assert complete == p.expectations.complete
    assert incomplete == dict(p.expectations.incomplete)
    assert n_planned == p.expectations.planned_events


def test_retries_and_resends_come_after_their_original() -> None:
    p = make(300, retry_share=0.3, resend_share=0.3)
    first_seen: dict[str, int] = {}
    first_body: dict[bytes, int] = {}
    for pos, d in enumerate(p.deliveries):
        if d.kind is DeliveryKind.ORIGINAL:
            assert d.message_id not in first_seen
            first_seen[d.message_id] = pos
            first_body.setdefault(d.body, pos)
    originals = {d.message_id: d for d in p.deliveries if d.kind is DeliveryKind.ORIGINAL}
    for pos, d in enumerate(p.deliveries):
        if d.kind is DeliveryKind.RETRY:
            original = originals[d.message_id]
            assert (original.body, original.event_type) == (d.body, d.event_type)
            assert first_seen[d.message_id] < pos
        elif d.kind is DeliveryKind.RESEND:
            assert d.message_id not in originals
            assert first_body[d.body] < pos


def test_message_ids_look_like_svix_and_are_unique_per_message() -> None:
    p = make(300, retry_share=0.0)
    ids = [d.message_id for d in p.deliveries]
    assert all(MSG_ID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(("share", "expected_first"), [(0.0, 0), (1.0, 180)])
def test_reorder_puts_ended_before_created(share: float, expected_first: int) -> None:
    p = make(200, reorder_share=share, half_only_share=0.1, retry_share=0.0, resend_share=0.0)
    first: dict[str, str] = {}
    for d in p.deliveries:
        if d.session_id is not None and d.event_type in (
            SESSION_CREATED,
            SESSION_ENDED,
        ):
            first.setdefault(d.session_id, d.event_type)
    ended_first = sum(1 for s in p.expectations.complete if first[s] == SESSION_ENDED)
    assert ended_first == expected_first


def test_reorder_share_is_exact() -> None:
    p = make(100, reorder_share=0.3, half_only_share=0.0, retry_share=0.0, resend_share=0.0)
    first: dict[str, str] = {}
    for d in p.deliveries:
        if d.event_type in (SESSION_CREATED, SESSION_ENDED):
            assert d.session_id is not None
            first.setdefault(d.session_id, d.event_type)
    assert sum(1 for s in p.expectations.complete if first[s] == SESSION_ENDED) == 30


def _events(p: Plan, event_type: str) -> list[dict[str, Any]]:
    return [orjson.loads(d.body) for d in p.deliveries if d.event_type == event_type]


def _ts(value: str) -> datetime:
    assert RFC3339_UTC.match(value), value
    return datetime.fromisoformat(value)


def test_session_events_follow_the_contract() -> None:
    p = make(150)
    created = {e["id"]: e for e in _events(p, SESSION_CREATED)}
    ended = {e["id"]: e for e in _events(p, SESSION_ENDED)}
    assert created
    assert ended
    for e in created.values():
        assert UUID.match(e["id"])
        assert UUID.match(e["agentId"])
        assert e["state"] == "OPEN"
        assert e["type"] in ("VOICE", "CHAT")
        assert e["platform"] in ("PHONE", "WEB", "WHATSAPP")
        assert e["direction"] in ("INBOUND", "OUTBOUND")
        assert _ts(e["createdAt"]) < NOW
        meta = e["metadata"]
        if "customerPhoneNumber" in meta:
            assert E164.match(meta["customerPhoneNumber"])
        assert set(meta["sessionVariables"]) == {"crmContactId", "taskId", "campaignId"}
    for e in ended.values():
        assert e["state"] == "CLOSED"
        start, last, end = _ts(e["createdAt"]), _ts(e["lastActivityAt"]), _ts(e["endedAt"])
        assert start <= last <= end <= NOW
        assert end - start <= timedelta(minutes=30)
        if e["id"] in created:
            same = ("type", "platform", "direction", "agentId", "createdAt", "metadata")
            assert all(e[k] == created[e["id"]][k] for k in same)
        a = e["analysis"]
        assert len(a["summary"]) > 150
        conv = a["intent"]["conversation"]
        assert conv["intent"] in KNOWN_INTENTS
        assert 0 <= conv["confidence"] <= 1
        assert conv["explanation"]
        res = a["resolution"]
        assert res["classification"] in (
            "RESOLVED",
            "PARTIALLY_RESOLVED",
            "UNRESOLVED",
            "NOT_APPLICABLE",
        )
        assert 0 <= res["confidenceScore"] <= 1
        assert isinstance(res["satisfiedChecklistItems"], list)
        assert res["evidence"]
        assert res["status"]
        assert res["explanation"]
        sent = a["sentiment"]["conversation"]
        assert sent["sentiment"] in ("POSITIVE", "NEUTRAL", "NEGATIVE")
        assert -1 <= sent["score"] <= 1
        assert re.match(r"^[a-z]{2}$", sent["detectedLanguage"])
        assert a["extractedData"]
        assert a["recordingUrl"].startswith("https://")


def test_bodies_are_compact_json_and_ended_is_about_2_kb() -> None:
    p = make(200)
    for d in p.deliveries:
        assert orjson.dumps(orjson.loads(d.body)) == d.body
    sizes = [len(d.body) for d in p.deliveries if d.event_type == SESSION_ENDED]
    mean = sum(sizes) / len(sizes)
    assert 1500 <= mean <= 2600, mean


def test_planned_events_have_their_key_fields() -> None:
    p = make(300, planned_share=1.0)
    chat = {
        e["id"]
        for e in _events(p, SESSION_CREATED) + _events(p, SESSION_ENDED)
        if e["type"] == "CHAT"
    }
    types = {d.event_type for d in p.deliveries if d.event_type in PLANNED_EVENT_TYPES}
    assert types == set(PLANNED_EVENT_TYPES)
    for e in _events(p, "session.updated"):
        assert e["id"] in chat
        assert e["changed"]
        assert e["state"] in ("OPEN", "CLOSED", "EXPIRED")
    for d in p.deliveries:
        if d.event_type == "message.added":
            e = orjson.loads(d.body)
            assert e["id"].startswith("msg_")
            assert e["sessionId"] == d.session_id
            assert e["role"] in ("USER", "ASSISTANT", "TOOL", "SYSTEM")
    for e in _events(p, "usage.updated"):
        assert set(e["totals"]) == {"chat_messages", "voice_seconds", "knowledge_chunks"}
        assert _ts(e["period"]["start"]) < _ts(e["period"]["end"])
    for e in _events(p, "subscription.updated"):
        assert e["status"] in ("active", "past_due", "canceled", "paused")
        assert e["plan"]
    for e in _events(p, "knowledge_store.updated"):
        assert e["status"] in ("UPSERTED", "FAILED")


def test_zero_sessions_is_an_empty_plan() -> None:
    p = make(0)
    assert p.deliveries == ()
    assert p.expectations.complete == frozenset()


@pytest.mark.parametrize(
    "bad",
    [{"retry_share": -0.1}, {"resend_share": 1.5}, {"planned_share": float("nan")}],
)
def test_out_of_range_shares_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(traffic.TrafficError):
        make(10, seed=7, **bad)


def test_naive_now_and_negative_sessions_are_refused() -> None:
    with pytest.raises(traffic.TrafficError):
        traffic.plan(
            1,
            seed=1,
            now=datetime(2025, 1, 1),  # noqa: DTZ001 - the naive datetime under test
        )
    with pytest.raises(traffic.TrafficError):
        make(-1)
