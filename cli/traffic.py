"""A deterministic plan of realistic Agntix webhook deliveries, with what a correct consumer must output."""

from __future__ import annotations

import math
import random
import string
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from cli import traffic_data as data
from cli.errors import CliError
from sessionflow.events import (
    MESSAGE_ADDED,
    PLANNED_EVENT_TYPES,
    SESSION_CREATED,
    SESSION_ENDED,
    SESSION_UPDATED,
    SUBSCRIPTION_UPDATED,
    USAGE_UPDATED,
)
from streams.models import IncompleteReason

# How far (in base deliveries) a retry or resend lands after its original: near, like a
# sender's first retries, yet far enough that other sessions' events come in between.
_DUPLICATE_WINDOW = 40
_BASE62 = string.digits + string.ascii_letters


class TrafficError(CliError, ValueError):
    """The plan's parameters are out of range."""


class DeliveryKind(StrEnum):
    ORIGINAL = "original"
    RETRY = "retry"  # same message id, same bytes: the sender retrying one message
    RESEND = "resend"  # new message id, same bytes: the event replayed as a new message


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST the sender makes (its own retries on non-2xx are not in the plan)."""

    message_id: str
    event_type: str
    body: bytes
    session_id: str | None
    kind: DeliveryKind = DeliveryKind.ORIGINAL


@dataclass(frozen=True, slots=True)
class Expectations:
    """What a consumer that dedups and pairs correctly ends up with once every delivery got a 2xx."""

    complete: frozenset[str]
    incomplete: Mapping[str, IncompleteReason]
    planned_events: int  # distinct planned-type events by bytes (retries and resends not counted)
    planned_deliveries: int  # planned-type deliveries, retries and resends included


@dataclass(frozen=True, slots=True)
class Plan:
    deliveries: tuple[Delivery, ...]
    expectations: Expectations
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Mix:
    """How far a plan strays from complete pairs, in order, each half sent once (every share 0).

    Each share is within [0, 1]. Retries and resends are drawn from the deliveries that the
    other three give. The names are those of `sessionflow send`'s options.
    """

    retry_share: float = 0.0  # of the deliveries: sent once more, same message id
    resend_share: float = 0.0  # of the deliveries: sent once more, new message id
    reorder_share: float = 0.0  # of the complete sessions: session.ended before session.created
    half_only_share: float = 0.0  # of the sessions: only one half sent
    planned_share: float = 0.0  # planned-type events added per session event

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= value <= 1.0 or math.isnan(value):
                raise TrafficError(f"{name} must be within [0, 1], got {value}")


def plan(sessions: int, *, seed: int, now: datetime, mix: Mix = Mix()) -> Plan:
    """Build the deliveries for `sessions` sessions; the same arguments give the same bytes."""
    if sessions < 0:
        raise TrafficError(f"sessions must be >= 0, got {sessions}")
    if now.tzinfo is None:
        raise TrafficError("now must be timezone-aware")
    now = now.astimezone(UTC)
    # Deterministic test traffic, not security: a seeded PRNG is the point.
    rng = random.Random(seed)  # noqa: S311

    half_only = set(rng.sample(range(sessions), round(mix.half_only_share * sessions)))
    complete_idx = [i for i in range(sessions) if i not in half_only]
    reordered = set(rng.sample(complete_idx, round(mix.reorder_share * len(complete_idx))))

    timeline: list[tuple[float, int, Delivery]] = []
    complete: set[str] = set()
    incomplete: dict[str, IncompleteReason] = {}
    chat_sessions: list[str] = []
    all_sessions: list[str] = []
    for i in range(sessions):
        s = _session(rng, now)
        all_sessions.append(s.session_id)
        if s.is_chat:
            chat_sessions.append(s.session_id)
        created = Delivery(_message_id(rng), SESSION_CREATED, s.created_body, s.session_id)
        ended = Delivery(_message_id(rng), SESSION_ENDED, s.ended_body, s.session_id)
        created_at, ended_at = s.started, s.ended
        if i in reordered:
            # The created delivery was held up (a sender retry, a slow queue) past the end.
            created_at = ended_at + rng.uniform(0.5, 30.0)
        if i in half_only:
            if rng.random() < 0.5:
                incomplete[s.session_id] = IncompleteReason.CREATED_WITHOUT_ENDED
                timeline.append((created_at, len(timeline), created))
            else:
                incomplete[s.session_id] = IncompleteReason.ENDED_WITHOUT_CREATED
                timeline.append((ended_at, len(timeline), ended))
        else:
            complete.add(s.session_id)
            timeline.append((created_at, len(timeline), created))
            timeline.append((ended_at, len(timeline), ended))

    n_planned = round(mix.planned_share * len(timeline))
    span = (min((t for t, _, _ in timeline), default=-3600.0), 0.0)
    for _ in range(n_planned):
        event_type, session_id, body = _planned_event(rng, now, chat_sessions, all_sessions)
        at = rng.uniform(*span)
        timeline.append(
            (at, len(timeline), Delivery(_message_id(rng), event_type, body, session_id))
        )

    timeline.sort(key=lambda item: (item[0], item[1]))
    base = [d for _, _, d in timeline]
    ordered: list[tuple[float, int, Delivery]] = [(float(i), 0, d) for i, d in enumerate(base)]
    for pos in rng.sample(range(len(base)), round(mix.retry_share * len(base))):
        d = base[pos]
        retry = Delivery(d.message_id, d.event_type, d.body, d.session_id, DeliveryKind.RETRY)
        ordered.append((pos + rng.uniform(0.5, _DUPLICATE_WINDOW), len(ordered), retry))
    for pos in rng.sample(range(len(base)), round(mix.resend_share * len(base))):
        d = base[pos]
        resend = Delivery(_message_id(rng), d.event_type, d.body, d.session_id, DeliveryKind.RESEND)
        ordered.append((pos + rng.uniform(0.5, _DUPLICATE_WINDOW), len(ordered), resend))
    ordered.sort(key=lambda item: (item[0], item[1]))
    deliveries = tuple(d for _, _, d in ordered)

    return Plan(
        deliveries=deliveries,
        expectations=Expectations(
            complete=frozenset(complete),
            incomplete=incomplete,
            planned_events=n_planned,
            planned_deliveries=sum(1 for d in deliveries if d.event_type in PLANNED_EVENT_TYPES),
        ),
        parameters={"sessions": sessions, "seed": seed, "now": _rfc3339(now), **asdict(mix)},
    )


@dataclass(frozen=True, slots=True)
class _Session:
    session_id: str
    is_chat: bool
    started: float  # seconds relative to `now`, negative: the past
    ended: float
    created_body: bytes
    ended_body: bytes


def _session(rng: random.Random, now: datetime) -> _Session:
    session_id = _uuid(rng)
    is_chat = rng.random() < 0.3
    if is_chat:
        kind, platform = "CHAT", rng.choice(("WEB", "WHATSAPP", "WHATSAPP"))
    else:
        kind, platform = "VOICE", rng.choice(("PHONE", "PHONE", "PHONE", "WEB"))
    direction = "OUTBOUND" if kind == "VOICE" and rng.random() < 0.4 else "INBOUND"
    # Call lengths are right-skewed: most a few minutes, a few much longer.
    duration = min(max(rng.lognormvariate(math.log(180.0), 0.8), 15.0), 1800.0)
    ended = -rng.uniform(2.0, 3600.0)
    started = ended - duration
    last_activity = ended - rng.uniform(0.0, min(10.0, duration))

    metadata: dict[str, Any] = {}
    if platform != "WEB":
        metadata["customerPhoneNumber"] = _phone(rng)
    if kind == "VOICE":
        metadata["roomName"] = f"room-{rng.getrandbits(48):012x}"
    metadata["sessionVariables"] = {
        "crmContactId": f"crm_{rng.randrange(10**7):07d}",
        "taskId": f"task_{rng.getrandbits(40):010x}",
        "campaignId": rng.choice(data.CAMPAIGNS),
    }
    common: dict[str, Any] = {
        "id": session_id,
        "type": kind,
        "platform": platform,
        "direction": direction,
        "agentId": _uuid(rng),
        "createdAt": _rfc3339(now + timedelta(seconds=started)),
    }
    created = {
        "id": session_id,
        "eventType": SESSION_CREATED,
        **{k: v for k, v in common.items() if k != "id"},
        "state": "OPEN",
        "metadata": metadata,
    }
    ended_event = {
        "id": session_id,
        "eventType": SESSION_ENDED,
        **{k: v for k, v in common.items() if k != "id"},
        "state": "CLOSED",
        "lastActivityAt": _rfc3339(now + timedelta(seconds=last_activity)),
        "endedAt": _rfc3339(now + timedelta(seconds=ended)),
        "metadata": metadata,
        "analysis": _analysis(rng, session_id),
    }
    return _Session(
        session_id,
        is_chat,
        started,
        ended,
        orjson.dumps(created),
        orjson.dumps(ended_event),
    )


def _analysis(rng: random.Random, session_id: str) -> dict[str, Any]:
    intent = rng.choice(data.INTENTS)
    topic, slot, name = rng.choice(data.TOPICS), rng.choice(data.SLOTS), rng.choice(data.NAMES)
    classification = rng.choices(tuple(data.RESOLUTION_SENTIMENT), weights=(60, 20, 15, 5), k=1)[0]
    sentiment, low, high = data.RESOLUTION_SENTIMENT[classification]
    satisfied = list(intent.checklist)
    if classification != "RESOLVED":
        satisfied = satisfied[: rng.randrange(len(satisfied))]
    confidence = round(rng.uniform(0.62, 0.99), 2)
    extracted: dict[str, Any] = {}
    for key in intent.extracted:
        if key == "customerName":
            extracted[key] = name
        elif key.endswith(("Date", "Window")):
            extracted[key] = slot
        elif key.endswith("Amount") or key in ("amount", "budget"):
            extracted[key] = round(rng.uniform(9.0, 450.0), 2)
        elif key.endswith(("Number", "Id")):
            extracted[key] = f"{key[:3].upper()}-{rng.randrange(10**6):06d}"
        else:
            extracted[key] = topic
    return {
        "summary": intent.summary.format(topic=topic, slot=slot),
        "intent": {
            "conversation": {
                "intent": intent.name,
                "confidence": confidence,
                "explanation": (
                    f"The customer's opening request and the follow-up questions were about "
                    f"{topic}; the agent's actions match '{intent.name}' and no competing intent "
                    f"was expressed later in the conversation."
                ),
            },
            "message": None,
        },
        "resolution": {
            "classification": classification,
            "confidenceScore": round(rng.uniform(0.55, 0.98), 2),
            "status": "COMPLETED",
            "satisfiedChecklistItems": satisfied,
            "evidence": [
                f"Agent: I can help you with {topic}, let me check that for you.",
                f"Customer: Yes, the {slot} works for me."
                if satisfied
                else "Customer: That does not help me.",
            ],
            "explanation": (
                f"{len(satisfied)} of {len(intent.checklist)} checklist items were satisfied; "
                f"the outcome was classified as {classification.lower().replace('_', ' ')} based on "
                f"the customer's final statements."
            ),
        },
        "sentiment": {
            "conversation": {
                "sentiment": sentiment,
                "score": round(rng.uniform(low, high), 2),
                "detectedLanguage": rng.choice(data.LANGUAGES),
            }
        },
        "extractedData": extracted,
        "recordingUrl": f"https://app.agntix.ai/dashboard/sessions/{session_id}/recording",
    }


def _planned_event(
    rng: random.Random, now: datetime, chat_sessions: list[str], all_sessions: list[str]
) -> tuple[str, str | None, bytes]:
    event_type = rng.choice(PLANNED_EVENT_TYPES)
    if event_type == SESSION_UPDATED and not chat_sessions:
        event_type = MESSAGE_ADDED  # session.updated is chat-only
    at = _rfc3339(now - timedelta(seconds=rng.uniform(0.0, 3600.0)))
    body: dict[str, Any]
    session_id: str | None = None
    if event_type == SESSION_UPDATED:
        session_id = rng.choice(chat_sessions)
        body = {
            "id": session_id,
            "eventType": event_type,
            "changed": rng.choice((["state"], ["state", "intelligence"], ["agentId"])),
            "state": rng.choice(("OPEN", "OPEN", "CLOSED", "EXPIRED")),
            "updatedAt": at,
        }
    elif event_type == MESSAGE_ADDED:
        session_id = rng.choice(all_sessions) if all_sessions else _uuid(rng)
        role = rng.choice(("USER", "ASSISTANT", "ASSISTANT", "TOOL", "SYSTEM"))
        body = {
            "id": _message_id(rng),
            "eventType": event_type,
            "sessionId": session_id,
            "role": role,
            "content": "" if role == "TOOL" else rng.choice(data.SLOTS),
            "createdAt": at,
        }
        if role == "TOOL":
            body["toolName"] = "check_availability"
            body["toolCallId"] = f"call_{rng.getrandbits(48):012x}"
    elif event_type == USAGE_UPDATED:
        end = now - timedelta(seconds=rng.randrange(0, 3600))
        body = {
            "id": _uuid(rng),
            "eventType": event_type,
            "period": {"start": _rfc3339(end - timedelta(seconds=60)), "end": _rfc3339(end)},
            "totals": {
                "chat_messages": rng.randrange(0, 500),
                "voice_seconds": rng.randrange(0, 20_000),
                "knowledge_chunks": rng.randrange(0, 5_000),
            },
        }
    elif event_type == SUBSCRIPTION_UPDATED:
        body = {
            "id": _uuid(rng),
            "eventType": event_type,
            "status": rng.choice(("active", "past_due", "canceled", "paused")),
            "plan": rng.choice(("starter", "growth", "scale")),
            "updatedAt": at,
        }
    else:
        body = {
            "id": _uuid(rng),
            "eventType": event_type,
            "documentId": _uuid(rng),
            "status": rng.choice(("UPSERTED", "UPSERTED", "FAILED")),
            "updatedAt": at,
        }
    return event_type, session_id, orjson.dumps(body)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _message_id(rng: random.Random) -> str:
    # Svix message ids: "msg_" and a 27-character base62 KSUID.
    return "msg_" + "".join(rng.choices(_BASE62, k=27))


def _phone(rng: random.Random) -> str:
    code = rng.choice(data.COUNTRY_CODES)
    digits = 10 if code == "+1" else rng.randrange(9, 11)
    return code + str(rng.randrange(1, 10)) + "".join(rng.choices(string.digits, k=digits - 1))


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
