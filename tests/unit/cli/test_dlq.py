"""The pure parts of `sessionflow dlq replay`: what a replayed record carries, progress groups."""

from __future__ import annotations

import orjson

from cli.dlq import ReplaySummary, group_for, reason_of, replay_record
from sessionflow.settings import KafkaSettings

WORKER_HEADERS = {
    "message-id": b"msg_1",
    "event-type": b"session.created",
    "received-at": b"2026-01-01T00:00:00.000Z",
    "reason": b"invalid_session_created",
    "stage": b"streams",
}


def test_a_worker_dead_letter_keeps_key_and_original_headers() -> None:
    key, headers = replay_record(b"sess-1", b"{}", WORKER_HEADERS, 3, 41)
    assert key == b"sess-1"
    assert headers == [
        ("message-id", b"msg_1"),
        ("event-type", b"session.created"),
        ("received-at", b"2026-01-01T00:00:00.000Z"),
        ("replayed-from", b"3:41"),
    ]


def test_a_producer_dead_letter_that_parses_now_is_keyed_like_the_producer_does() -> None:
    body = orjson.dumps({"eventType": "session.ended", "id": "sess-9"})
    headers = {"message-id": b"msg_2", "reason": b"no_key", "received-at": b"t"}
    key, out = replay_record(None, body, headers, 0, 5)
    assert key == b"sess-9"
    assert dict(out) == {
        "message-id": b"msg_2",
        "received-at": b"t",
        "event-type": b"session.ended",
        "replayed-from": b"0:5",
    }


def test_a_still_unusable_body_is_keyed_by_its_message_id() -> None:
    key, out = replay_record(None, b"{nope", {"message-id": b"msg_3"}, 1, 0)
    assert key == b"msg_3"
    assert dict(out) == {"message-id": b"msg_3", "replayed-from": b"1:0"}


def test_progress_groups_are_namespaced_and_one_per_filter() -> None:
    settings = KafkaSettings(topic_namespace="ns.")
    assert group_for(settings, frozenset()) == "ns.sessionflow-dlq-replay"
    ab = group_for(settings, frozenset({"a", "b"}))
    assert ab == group_for(settings, frozenset({"b", "a"}))
    assert ab.startswith("ns.sessionflow-dlq-replay.")
    assert ab != group_for(settings, frozenset({"a"}))


def test_reason_defaults_when_the_header_is_missing() -> None:
    assert reason_of({}) == "unknown"
    assert reason_of({"reason": b"not_json"}) == "not_json"


def test_summary_names_counts_by_reason() -> None:
    s = ReplaySummary(scanned=3, replayed=2, skipped_by_filter=1, dry_run=True)
    s.by_reason["not_json"] = 2
    s.skipped_reasons["no_key"] = 1
    text = s.render()
    assert "dry run: nothing written" in text
    assert "  would replay       2" in text
    assert "would replay not_json: 2" in text
    assert "skipped no_key: 1" in text
