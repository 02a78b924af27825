"""The transcript record: encoding, the committed schema, the session id of an input record."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import orjson
import pytest

from enricher.records import FailureReason, TranscriptRecord, encode_record, session_id_of

REPO = Path(__file__).resolve().parents[3]
SCHEMA = jsonschema_rs.validator_for(
    json.loads((REPO / "schemas" / "session-transcript.v1.json").read_text())
)
SID = "123e4567-e89b-12d3-a456-426614174000"


def record(**overrides: object) -> TranscriptRecord:
    values: dict[str, object] = {
        "sessionId": SID,
        "status": "ok",
        "messages": [{"id": "msg_1", "role": "TOOL", "content": "", "n": 2**70}],
        "messageCount": 1,
        "fetchedAt": "2025-01-01T00:00:00.000Z",
        "attempts": 1,
        "pages": 1,
        "httpStatus": 200,
        "error": None,
        "detail": None,
    }
    values.update(overrides)
    return TranscriptRecord.model_validate(values)


def test_an_ok_record_encodes_exactly_and_validates() -> None:
    data = encode_record(record())
    doc = json.loads(data)
    assert doc["messages"][0]["n"] == 2**70
    assert list(doc) == list(TranscriptRecord.model_fields)
    assert SCHEMA.is_valid(doc)


def test_a_failed_record_validates_and_the_schema_refuses_strangers() -> None:
    failed = record(
        status="failed",
        messages=None,
        messageCount=0,
        attempts=4,
        httpStatus=503,
        error=FailureReason.HTTP_STATUS,
        detail="HTTP 503; gave up after 4 attempts",
    )
    doc = orjson.loads(encode_record(failed))
    assert SCHEMA.is_valid(doc)
    assert not SCHEMA.is_valid(doc | {"extra": 1})
    assert not SCHEMA.is_valid(doc | {"status": "maybe"})
    assert not SCHEMA.is_valid(doc | {"error": "bad_luck"})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (SID.encode(), None, SID),
        (None, orjson.dumps({"sessionId": SID}), SID),
        (b"not-a-uuid", orjson.dumps({"sessionId": SID}), SID),
        (b"not-a-uuid", b"not json", None),
        (None, orjson.dumps([1]), None),
        (b"\xff", None, None),
        (None, None, None),
    ],
)
def test_session_id_of(key: bytes | None, value: bytes | None, expected: str | None) -> None:
    assert session_id_of(key, value) == expected
