"""`sessionflow inspect`'s pure parts: the time window, the verdict, what is printed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from cli.inspect import (
    InspectError,
    Story,
    dead_letter_entry,
    output_entry,
    parse_since,
    raw_entry,
    story_verdict,
    to_json,
    to_text,
)
from cli.main import main

NOW = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)
SID = "3f2b8c1e-9d4a-4e6b-8f1a-2c3d4e5f6a7b"


@dataclass
class Rec:
    offset: int
    value: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "t"
    partition: int = 0
    timestamp: int = 1
    key: bytes | None = SID.encode()


def story(**parts: object) -> Story:
    found = Story(session_id=SID, partition=2, since="2026-12-01T05:00:00Z")
    for name, value in parts.items():
        setattr(found, name, value)
    return found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("72h", NOW - timedelta(hours=72)),
        ("30m", NOW - timedelta(minutes=30)),
        ("7d", NOW - timedelta(days=7)),
        ("90s", NOW - timedelta(seconds=90)),
        ("2026-12-01T00:00:00Z", datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_since_is_a_duration_or_a_time(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "3 weeks", "-5h", "2026-12-01T00:00:00"])
def test_since_refuses_what_it_cannot_place(text: str) -> None:
    with pytest.raises(InspectError):
        parse_since(text, NOW)


def test_entries_take_the_contract_headers_and_no_body() -> None:
    raw = Rec(
        7,
        b'{"metadata":{"customerPhoneNumber":"+14155550123"}}',
        [(b"message-id".decode(), b"msg_1"), ("event-type", b"session.created")],
    )
    assert raw_entry(raw) == {
        "offset": 7,
        "timestamp": 1,
        "messageId": "msg_1",
        "eventType": "session.created",
        "receivedAt": None,
    }
    dead = dead_letter_entry(
        Rec(3, b"x", [("reason", b"invalid_session_event"), ("stage", b"streams")])
    )
    assert (dead["reason"], dead["stage"]) == ("invalid_session_event", "streams")
    out = output_entry(Rec(9, b'{"completedAt":"t","metadata":{"a":1}}'), ("completedAt",))
    assert out == {"offset": 9, "timestamp": 1, "completedAt": "t"}
    assert output_entry(Rec(9, b"nope"), ("completedAt",))["error"] == "not JSON"


def test_an_output_record_decides_first() -> None:
    found = story(
        completed=[{"offset": 4, "completedAt": "2026-12-02T00:00:00.000Z"}],
        table={"state": "completed"},
        raw=[{"eventType": "session.created"}],
    )
    assert story_verdict(found) == ("completed", "completed at 2026-12-02T00:00:00.000Z (offset 4)")
    found = story(incomplete=[{"offset": 1, "reason": "created_without_ended", "expiredAt": "x"}])
    assert story_verdict(found)[0] == "incomplete"
    assert "created_without_ended" in story_verdict(found)[1]


def test_then_the_table() -> None:
    waiting = story(
        table={
            "state": "waiting",
            "half": "session.created",
            "waitingFor": "session.ended",
            "expiresAt": "T",
        },
        raw=[{"eventType": "session.created"}],
    )
    assert story_verdict(waiting) == (
        "waiting",
        "waiting for session.ended (has session.created, expires at T)",
    )
    # A marker whose completed record is older than the window: still completed.
    assert story_verdict(story(table={"state": "completed", "completedAt": "T"}))[0] == "completed"


def test_then_dead_letters_then_raw_halves_then_nothing() -> None:
    dead = story(dead_letters=[{"reason": "invalid_session_event"}], table={"state": "unknown"})
    assert story_verdict(dead) == ("dead_lettered", "dead-lettered: invalid_session_event")
    unanswered = story(raw=[{"eventType": "session.ended"}], table={"error": "worker_unreachable"})
    verdict, line = story_verdict(unanswered)
    assert verdict == "waiting"
    assert "worker_unreachable" in line
    assert story_verdict(story(raw=[{"eventType": "message.added"}]))[0] == "unknown"
    assert story_verdict(story()) == ("unknown", "never seen since 2026-12-01T05:00:00Z")


def test_json_and_text_carry_the_verdict() -> None:
    found = story(
        raw=[{"offset": 1, "eventType": "session.created", "messageId": "m", "receivedAt": "r"}],
        dead_letters=[{"offset": 2, "reason": "x", "stage": "streams", "messageId": "m"}],
        table={"state": "unknown"},
    )
    doc = orjson.loads(orjson.dumps(to_json(found)))
    assert doc["verdict"] == "dead_lettered"
    assert doc["partition"] == 2
    text = to_text(found)
    assert text.splitlines()[0] == f"session {SID}: dead-lettered: x"
    assert "@1 session.created m received r" in text
    assert text.rstrip().endswith("verdict: dead_lettered")


def test_a_session_id_that_is_not_a_uuid_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "not-a-uuid"]) == 2
    assert "not a UUID" in capsys.readouterr().err
