"""The transcript record written per session to agntix.sessions.transcripts, and its encoding."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from streams.models import JsonObject, UtcMillis, UuidText

TRANSCRIPT_SCHEMA_VERSION: Final = 1


class TranscriptStatus(StrEnum):
    OK = "ok"
    NOT_FOUND = "not_found"
    FAILED = "failed"


# Statuses whose record means "done": a duplicate of the session is not fetched again.
WRITTEN: Final = frozenset({TranscriptStatus.OK, TranscriptStatus.NOT_FOUND})


class FailureReason(StrEnum):
    """Why a `failed` record failed: a bounded set (it is a metric label too)."""

    HTTP_STATUS = "http_status"  # a final non-2xx answer; httpStatus says which
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    TOO_LARGE = "too_large"  # the answers exceed SESSIONFLOW_MAX_TRANSCRIPT_BYTES
    INVALID_BODY = "invalid_body"  # a 2xx body that is no transcript page
    PAGE_LIMIT = "page_limit"  # more pages than SESSIONFLOW_ENRICHER_MAX_PAGES
    CURSOR_LOOP = "cursor_loop"  # the API handed back a cursor it had given before


class TranscriptRecord(BaseModel):
    """One session's transcript, or why there is none."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )

    schemaVersion: Literal[1] = TRANSCRIPT_SCHEMA_VERSION
    sessionId: UuidText
    status: TranscriptStatus
    messages: Annotated[
        list[JsonObject] | None,
        Field(
            description=(
                "for ok: every message exactly as the API sent it (unknown fields too), in the "
                "order of their time (createdAt, created_at, timestamp, sentAt, sent_at or time) "
                "where they have one, else in the API's order; null otherwise"
            )
        ),
    ]
    messageCount: Annotated[int, Field(ge=0)]
    fetchedAt: Annotated[UtcMillis, Field(description="when the enricher finished the fetch")]
    attempts: Annotated[
        int, Field(ge=0, description="HTTP requests made for this session, pages and retries")
    ]
    pages: Annotated[int, Field(ge=0, description="pages read (2xx answers)")]
    httpStatus: Annotated[
        int | None, Field(description="the last HTTP status the API answered; null if none came")
    ]
    error: Annotated[FailureReason | None, Field(description="for failed: why; null otherwise")]
    detail: Annotated[
        str | None, Field(description="for failed: a short explanation; null otherwise")
    ]


def encode_record(record: TranscriptRecord) -> bytes:
    """Compact JSON bytes, fields in schema order, every message value exact."""
    doc: dict[str, Any] = record.model_dump(mode="python")
    try:
        return orjson.dumps(doc)
    except (orjson.JSONEncodeError, TypeError):
        # Integers beyond 64 bits (a tool call's numeric id) are valid JSON that orjson
        # refuses; the stdlib writes them exactly.
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def session_id_of(key: bytes | None, value: bytes | None) -> str | None:
    """The session id of a completed record: its key, else its `sessionId`; None if neither is one."""
    if key is not None:
        try:
            text = key.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if _UUID.match(text):
            return text
    if value is not None:
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        sid = doc.get("sessionId") if isinstance(doc, dict) else None
        if isinstance(sid, str) and _UUID.match(sid):
            return sid
    return None
