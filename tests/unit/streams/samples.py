"""Realistic Agntix session events and producer headers for tests (reusable across packages)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.decode import Envelope, decode

AGENT_ID = "7f4c1e2a-5b3d-4e8f-9a1b-2c3d4e5f6a7b"
T0 = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0_MS = (T0 - EPOCH) // timedelta(milliseconds=1)


def at_ms(epoch_ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=epoch_ms)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def metadata(**session_variables: Any) -> dict[str, Any]:
    return {
        "customerPhoneNumber": "+14155550123",
        "roomName": "room-outbound-4f2a",
        "sessionVariables": session_variables
        or {
            "crmContactId": "003Dn00000Qx7ZAIAZ",
            "taskId": "task_81723",
            "campaignId": "spring-renewals-2025",
            # Numbers and nesting must survive untouched.
            "attempt": 2,
            "score": 0.875,
            "bigAccountNumber": 123456789012345678901234567890,
            "tags": ["renewal", "vip"],
            "nested": {"z": 1, "a": {"y": None, "b": True}},
        },
    }


def analysis() -> dict[str, Any]:
    return {
        "summary": (
            "The customer called to renew their annual plan. The agent confirmed the account, "
            "explained the two renewal options and the customer chose the premium tier with "
            "monthly billing. A confirmation e-mail will be sent within the hour."
        ),
        "intent": {
            "conversation": {
                "intent": "renew_subscription",
                "confidence": 0.93,
                "explanation": "The caller explicitly asked to renew and compared plans.",
            },
            "message": None,
        },
        "resolution": {
            "classification": "RESOLVED",
            "confidenceScore": 0.88,
            "status": "COMPLETED",
            "satisfiedChecklistItems": ["identity_verified", "plan_selected", "billing_confirmed"],
            "evidence": [
                "Customer: 'Yes, let's go with premium, billed monthly.'",
                "Agent: 'Done, you will receive a confirmation e-mail.'",
            ],
            "explanation": "All checklist items were satisfied before the call ended.",
        },
        "sentiment": {
            "conversation": {"sentiment": "POSITIVE", "score": 0.62, "detectedLanguage": "en"}
        },
        "extractedData": {
            "selectedPlan": "premium",
            "billingCycle": "monthly",
            "seats": 12,
            "discountPercent": 7.5,
            "callbackRequested": False,
            "preferredContactTime": None,
        },
        "customerPhoneNumber": "+14155550123",
    }


def _session_head(
    session_id: str | None, event_type: str, state: str, created_at: datetime
) -> dict[str, Any]:
    """The fields both halves carry, in the platform's order."""
    return {
        "id": session_id or str(uuid.uuid4()),
        "eventType": event_type,
        "type": "VOICE",
        "platform": "PHONE",
        "direction": "OUTBOUND",
        "state": state,
        "agentId": AGENT_ID,
        "createdAt": rfc3339(created_at),
    }


def session_created(
    session_id: str | None = None, *, created_at: datetime = T0, **overrides: Any
) -> dict[str, Any]:
    event = _session_head(session_id, "session.created", "OPEN", created_at)
    event["metadata"] = metadata()
    event.update(overrides)
    return event


def session_ended(
    session_id: str | None = None,
    *,
    created_at: datetime = T0,
    duration: timedelta = timedelta(minutes=4, seconds=12, milliseconds=250),
    **overrides: Any,
) -> dict[str, Any]:
    ended_at = created_at + duration
    event = _session_head(session_id, "session.ended", "CLOSED", created_at)
    event |= {
        "lastActivityAt": rfc3339(ended_at - timedelta(seconds=3)),
        "endedAt": rfc3339(ended_at),
        "metadata": metadata(),
        "analysis": analysis(),
        # Undocumented field name for the recording link: unknown fields are kept.
        "recordingUrl": "https://app.agntix.example/sessions/recording/abc123",
    }
    event.update(overrides)
    return event


def to_bytes(event: dict[str, Any]) -> bytes:
    # Python's json writes integers of any size; orjson stops at 64 bits.
    return json.dumps(event, separators=(",", ":")).encode()


def headers(
    message_id: str | None = None, event_type: str | None = None, received_at_ms: int = T0_MS
) -> dict[str, bytes]:
    out = {
        "message-id": (message_id or f"msg_{uuid.uuid4().hex[:24]}").encode(),
        "received-at": rfc3339(at_ms(received_at_ms)).encode(),
    }
    if event_type is not None:
        out["event-type"] = event_type.encode()
    return out


def envelope(
    event: dict[str, Any], message_id: str | None = None, received_at_ms: int = T0_MS
) -> Envelope:
    """The envelope the worker would decode from the producer's record of this event."""
    return decode(
        to_bytes(event),
        headers(message_id, str(event["eventType"]), received_at_ms),
        now_ms=received_at_ms,
    )
