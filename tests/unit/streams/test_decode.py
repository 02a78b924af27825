"""decode(): what reaches the core, and what goes to the DLQ with which reason."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from streams.decode import DecodeError, Envelope, decode, digest_of
from streams.models import SessionCreated, SessionEnded
from tests.unit.streams import samples

NOW_MS = 1_800_000_000_000


def _decode(event: dict[str, Any] | bytes, **header_overrides: bytes | None) -> Envelope:
    raw = event if isinstance(event, bytes) else samples.to_bytes(event)
    headers: dict[str, bytes] = {
        "message-id": b"msg_2dQpAbC",
        "event-type": b"session.created",
        "received-at": b"2025-03-14T09:26:53.589Z",
    }
    if not isinstance(event, bytes) and isinstance(event.get("eventType"), str):
        headers["event-type"] = event["eventType"].encode()
    for name, value in header_overrides.items():
        key = name.replace("_", "-")
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return decode(raw, headers, NOW_MS)


def _reason(event: dict[str, Any] | bytes, **header_overrides: bytes | None) -> str:
    with pytest.raises(DecodeError) as caught:
        _decode(event, **header_overrides)
    return caught.value.reason


def test_session_created_envelope() -> None:
    sid = str(uuid.uuid4()).upper()
    raw = samples.to_bytes(samples.session_created(sid))
    env = _decode(raw, event_type=b"session.created")
    assert env.event_type == "session.created"
    assert env.session_id == sid  # as received: it is the producer's Kafka key
    assert env.message_id == "msg_2dQpAbC"
    assert env.received_at_ms == samples.T0_MS
    assert env.body is raw
    assert env.digest == digest_of(raw)
    assert len(env.digest) == 8
    assert isinstance(env.event, SessionCreated)


def test_session_ended_envelope() -> None:
    env = _decode(samples.session_ended())
    assert env.event_type == "session.ended"
    assert isinstance(env.event, SessionEnded)


def test_digest_tells_same_content_from_different_content() -> None:
    sid = str(uuid.uuid4())
    first = _decode(samples.session_ended(sid))
    again = _decode(samples.session_ended(sid), message_id=b"msg_other")
    changed = _decode(samples.session_ended(sid, analysis={"summary": "other"}))
    assert first.digest == again.digest
    assert first.digest != changed.digest


def test_session_event_without_event_type_header_is_parsed_from_the_body() -> None:
    env = _decode(samples.session_ended(), event_type=None)
    assert isinstance(env.event, SessionEnded)


@pytest.mark.parametrize(
    "value",
    [None, b"", b"not a time", b"2025-03-14T09:26:53.589", b"\xff\xfe"],
    ids=["missing", "empty", "garbage", "naive", "not-utf8"],
)
def test_unusable_received_at_falls_back_to_now(value: bytes | None) -> None:
    assert _decode(samples.session_created(), received_at=value).received_at_ms == NOW_MS


def test_received_at_with_offset() -> None:
    env = _decode(samples.session_created(), received_at=b"2025-03-14T11:26:53.589+02:00")
    assert env.received_at_ms == samples.T0_MS


@pytest.mark.parametrize("value", [None, b"", b"\xff"], ids=["missing", "empty", "not-utf8"])
def test_missing_message_id(value: bytes | None) -> None:
    assert _reason(samples.session_created(), message_id=value) == "missing_message_id"


@pytest.mark.parametrize("event_type", [None, b"session.created", b"usage.updated"])
def test_not_json(event_type: bytes | None) -> None:
    assert _reason(b'{"eventType": "session.created", ', event_type=event_type) == "not_json"


@pytest.mark.parametrize("event_type", [None, b"session.ended", b"usage.updated"])
def test_not_object(event_type: bytes | None) -> None:
    assert _reason(b'["session.ended"]', event_type=event_type) == "not_object"


@pytest.mark.parametrize("body", [{"id": "x"}, {"eventType": 3}, {"eventType": ""}])
def test_no_event_type(body: dict[str, Any]) -> None:
    assert _reason(orjson.dumps(body), event_type=None) == "no_event_type"


def test_invalid_session_created() -> None:
    assert _reason(samples.session_created(platform="SMS")) == "invalid_session_created"


def test_invalid_session_ended() -> None:
    event = samples.session_ended()
    del event["endedAt"]
    assert _reason(event) == "invalid_session_ended"


def test_invalid_session_event_without_header() -> None:
    event = samples.session_created(createdAt="2025-03-14")
    assert _reason(event, event_type=None) == "invalid_session_created"


@pytest.mark.parametrize(
    ("body_type", "header_type"),
    [
        ("session.ended", b"session.created"),
        ("usage.updated", b"session.ended"),
        ("session.created", b"usage.updated"),
    ],
)
def test_event_type_mismatch_between_header_and_body(body_type: str, header_type: bytes) -> None:
    event = samples.session_created(eventType=body_type)
    assert _reason(event, event_type=header_type) == "event_type_mismatch"


def test_decode_error_keeps_a_readable_detail() -> None:
    with pytest.raises(DecodeError) as caught:
        _decode(samples.session_created(platform="SMS", direction="UP"))
    assert "platform" in caught.value.detail
    assert "direction" in caught.value.detail
    assert isinstance(caught.value.__cause__, ValueError)


@pytest.mark.parametrize("event_type", ["usage.updated", "subscription.updated", "brand.new"])
def test_other_event_types_pass_shallowly(event_type: str) -> None:
    raw = orjson.dumps({"eventType": event_type, "whatever": [1, 2], "status": "???"})
    env = _decode(raw, event_type=event_type.encode())
    assert env.event_type == event_type
    assert env.event is None
    assert env.session_id is None
    assert env.body is raw


def test_session_updated_carries_its_session_id_but_no_parsed_event() -> None:
    sid = str(uuid.uuid4())
    raw = orjson.dumps({"eventType": "session.updated", "id": sid, "state": "WHATEVER"})
    env = _decode(raw, event_type=None)
    assert env.event_type == "session.updated"
    assert env.session_id == sid
    assert env.event is None


def test_envelope_is_frozen() -> None:
    env = _decode(samples.session_created())
    with pytest.raises(AttributeError):
        env.message_id = "other"  # type: ignore[misc]
