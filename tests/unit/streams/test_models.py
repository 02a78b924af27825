"""Event and output models: strict where the core reads, faithful where we pass data through."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from streams.models import (
    EVENT_MODELS,
    CompletedSession,
    Direction,
    HalfRef,
    IncompleteReason,
    IncompleteSession,
    KnowledgeStoreUpdated,
    MessageAdded,
    Platform,
    SessionCreated,
    SessionEnded,
    SessionStatus,
    SessionType,
    SessionUpdated,
    SubscriptionUpdated,
    UsageUpdated,
    encode_output,
    format_dt,
    format_ms,
)
from tests.unit.streams import samples


def test_session_created_validates_what_the_core_reads() -> None:
    sid = str(uuid.uuid4())
    event = SessionCreated.model_validate_json(samples.to_bytes(samples.session_created(sid)))
    assert event.id == sid
    assert event.type is SessionType.VOICE
    assert event.platform is Platform.PHONE
    assert event.direction is Direction.OUTBOUND
    assert event.state is SessionStatus.OPEN
    assert event.createdAt == samples.T0


def test_session_ended_keeps_unknown_fields_and_analysis_as_received() -> None:
    raw = samples.to_bytes(samples.session_ended())
    event = SessionEnded.model_validate_json(raw)
    assert event.model_extra == {
        "recordingUrl": "https://app.agntix.example/sessions/recording/abc123"
    }
    assert event.analysis == samples.analysis()
    assert event.endedAt - event.createdAt == timedelta(minutes=4, seconds=12, milliseconds=250)


def test_metadata_keeps_key_order_and_exact_numbers() -> None:
    raw = samples.to_bytes(samples.session_created())
    event = SessionCreated.model_validate_json(raw)
    received = json.loads(raw)["metadata"]
    assert event.metadata == received
    assert event.metadata is not None
    assert list(event.metadata["sessionVariables"]) == list(received["sessionVariables"])
    assert event.metadata["sessionVariables"]["bigAccountNumber"] == 123456789012345678901234567890
    assert list(event.metadata["sessionVariables"]["nested"]) == ["z", "a"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "not-a-uuid"),
        ("id", "{" + str(uuid.UUID(int=1)) + "}"),
        ("id", uuid.UUID(int=1).hex),
        ("agentId", 42),
        ("type", "VIDEO"),
        ("platform", "SMS"),
        ("direction", "SIDEWAYS"),
        ("state", "HALF_OPEN"),
        ("createdAt", "2025-03-14T09:26:53"),  # no time zone
        ("createdAt", "yesterday"),
        ("eventType", "session.ended"),
        ("metadata", ["not", "an", "object"]),
    ],
)
def test_session_created_rejects_bad_core_fields(field: str, value: Any) -> None:
    raw = samples.to_bytes(samples.session_created(**{field: value}))
    with pytest.raises(ValidationError):
        SessionCreated.model_validate_json(raw)


@pytest.mark.parametrize("field", ["endedAt", "lastActivityAt", "type", "agentId", "createdAt"])
def test_session_ended_requires_core_fields(field: str) -> None:
    event = samples.session_ended()
    del event[field]
    with pytest.raises(ValidationError):
        SessionEnded.model_validate_json(samples.to_bytes(event))


def test_optional_blocks_may_be_absent() -> None:
    event = samples.session_ended()
    del event["analysis"]
    del event["metadata"]
    parsed = SessionEnded.model_validate_json(samples.to_bytes(event))
    assert parsed.analysis is None
    assert parsed.metadata is None


def test_offset_timestamps_are_accepted_as_the_same_instant() -> None:
    plus_two = samples.T0.astimezone(timezone(timedelta(hours=2))).isoformat()
    event = SessionCreated.model_validate_json(
        samples.to_bytes(samples.session_created(createdAt=plus_two))
    )
    assert event.createdAt == samples.T0


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (
            SessionUpdated,
            {
                "eventType": "session.updated",
                "id": str(uuid.uuid4()),
                "changedFields": ["state", "intelligence"],
                "state": "EXPIRED",
                "future": {"x": 1},
            },
        ),
        (
            MessageAdded,
            {
                "eventType": "message.added",
                "id": "msg_01HZX",
                "sessionId": str(uuid.uuid4()),
                "role": "TOOL",
                "content": "",
                "toolName": "lookup_order",
            },
        ),
        (
            UsageUpdated,
            {
                "eventType": "usage.updated",
                "period": {"start": "2025-03-14T09:00:00Z", "end": "2025-03-14T09:01:00Z"},
                "totals": {"chat_messages": 120, "voice_seconds": 3600.5, "knowledge_chunks": 7},
            },
        ),
        (
            SubscriptionUpdated,
            {"eventType": "subscription.updated", "status": "past_due", "plan": "growth"},
        ),
        (
            KnowledgeStoreUpdated,
            {"eventType": "knowledge_store.updated", "status": "UPSERTED", "documentId": "d1"},
        ),
    ],
)
def test_planned_events_validate_and_keep_unknown_fields(
    model: type[SessionUpdated], body: dict[str, Any]
) -> None:
    parsed = model.model_validate_json(orjson.dumps(body))
    dumped = parsed.model_dump(mode="json", exclude_unset=True)
    assert dumped == body
    assert EVENT_MODELS[body["eventType"]] is model


def test_every_contract_event_type_has_a_model() -> None:
    assert set(EVENT_MODELS) == {
        "session.created",
        "session.ended",
        "session.updated",
        "message.added",
        "usage.updated",
        "subscription.updated",
        "knowledge_store.updated",
    }


def test_format_ms_and_format_dt_write_utc_milliseconds() -> None:
    assert format_ms(0) == "1970-01-01T00:00:00.000Z"
    assert format_ms(samples.T0_MS) == "2025-03-14T09:26:53.589Z"
    # Values where a float division would round down to the previous millisecond.
    assert format_ms(1_741_944_413_001) == "2025-03-14T09:26:53.001Z"
    local = datetime(2025, 3, 14, 11, 26, 53, 589999, tzinfo=timezone(timedelta(hours=2)))
    assert format_dt(local) == "2025-03-14T09:26:53.589Z"


@given(st.integers(min_value=-(10**12), max_value=253_402_300_799_999))
def test_format_ms_is_isoformat_of_the_exact_millisecond(epoch_ms: int) -> None:
    exact = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)
    assert format_ms(epoch_ms) == exact.isoformat(timespec="milliseconds")[:-6] + "Z"


def _completed(**overrides: Any) -> CompletedSession:
    fields: dict[str, Any] = {
        "sessionId": str(uuid.uuid4()),
        "agentId": samples.AGENT_ID,
        "type": SessionType.CHAT,
        "platform": Platform.WHATSAPP,
        "direction": Direction.INBOUND,
        "createdAt": "2025-03-14T09:26:53.589Z",
        "endedAt": "2025-03-14T09:31:05.839Z",
        "lastActivityAt": "2025-03-14T09:31:02.839Z",
        "durationSeconds": 252.25,
        "metadata": samples.metadata(),
        "analysis": samples.analysis(),
        "created": {"messageId": "msg_a", "receivedAt": "2025-03-14T09:26:54.000Z"},
        "ended": {"messageId": "msg_b", "receivedAt": "2025-03-14T09:31:06.000Z"},
        "completedAt": "2025-03-14T09:31:06.010Z",
    }
    fields.update(overrides)
    return CompletedSession.model_validate(fields)


def test_encode_output_writes_schema_order_and_exact_pass_through() -> None:
    record = _completed()
    data = encode_output(record)
    decoded = json.loads(data)
    assert list(decoded) == list(CompletedSession.model_fields)
    assert decoded["schemaVersion"] == 1
    assert decoded["metadata"] == samples.metadata()
    assert decoded["analysis"] == samples.analysis()
    assert decoded["type"] == "CHAT"
    assert CompletedSession.model_validate_json(data) == record


def test_encode_output_is_orjson_when_no_big_integers() -> None:
    record = _completed(metadata={"sessionVariables": {"taskId": "t1", "n": 3}}, analysis=None)
    assert encode_output(record) == orjson.dumps(record.model_dump(mode="json"))


def test_encode_incomplete_session() -> None:
    event = samples.session_created()
    record = IncompleteSession(
        sessionId=event["id"],
        reason=IncompleteReason.CREATED_WITHOUT_ENDED,
        firstSeenAt="2025-03-14T09:26:54.000Z",
        expiredAt="2025-03-16T09:26:54.000Z",
        received=HalfRef(messageId="msg_a", receivedAt="2025-03-14T09:26:54.000Z"),
        event=event,
    )
    decoded = json.loads(encode_output(record))
    assert decoded["reason"] == "created_without_ended"
    assert decoded["event"] == event
    assert list(decoded["event"]) == list(event)


@pytest.mark.parametrize(
    "overrides",
    [
        {"createdAt": "2025-03-14T09:26:53Z"},  # not milliseconds
        {"type": "VIDEO"},
        {"unknown": 1},
        {"schemaVersion": 2},
    ],
)
def test_completed_session_schema_is_strict(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _completed(**overrides)


def test_models_use_utc_aware_datetimes() -> None:
    event = SessionEnded.model_validate_json(samples.to_bytes(samples.session_ended()))
    assert event.endedAt.utcoffset() == timedelta(0)
    assert event.endedAt.tzinfo is not None
    assert event.endedAt.astimezone(UTC) > samples.T0
