"""Reading the API's answers: the page envelope, its cursor, message time order. Pure functions."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from enricher.errors import EnvelopeError

# Where a page may hold its messages, and its cursor to the next page (the page documents
# neither): the first key present wins.
MESSAGE_KEYS: Final = ("messages", "data", "items")
CURSOR_KEYS: Final = ("nextCursor", "next_cursor", "next")
# Pagination blocks some APIs nest the cursor in.
CURSOR_BLOCKS: Final = ("meta", "pagination", "page", "links")
HAS_MORE_KEYS: Final = ("hasMore", "has_more")
TIME_KEYS: Final = ("createdAt", "created_at", "timestamp", "sentAt", "sent_at", "time")
# Epoch numbers above this are milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD: Final = 1e11


@dataclass(frozen=True, slots=True)
class Page:
    messages: list[dict[str, Any]]
    cursor: str | None


def parse_page(body: bytes) -> Page:
    """One 2xx body: a JSON array of messages, or an object holding it under a known key.

    The stdlib parser keeps integers of any size exact (orjson would turn them into floats).
    """
    if not body.strip():
        return Page([], None)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError("the body is not JSON") from exc
    if isinstance(doc, list):
        return Page(_objects(doc), None)
    if not isinstance(doc, dict):
        raise EnvelopeError(f"the body is a JSON {type(doc).__name__}, not an array or object")
    holder = doc
    messages = _find_messages(doc)
    if messages is None:
        # One level of nesting: {"data": {"messages": [...], "nextCursor": ...}}.
        for key in MESSAGE_KEYS:
            inner = doc.get(key)
            if isinstance(inner, dict):
                messages = _find_messages(inner)
                if messages is not None:
                    holder = inner
                    break
    if messages is None:
        raise EnvelopeError("no messages array under " + ", ".join(MESSAGE_KEYS) + " in the body")
    cursor = find_cursor(holder) if holder is doc else (find_cursor(holder) or find_cursor(doc))
    return Page(_objects(messages), cursor)


def _find_messages(doc: Mapping[str, Any]) -> list[Any] | None:
    for key in MESSAGE_KEYS:
        value = doc.get(key)
        if isinstance(value, list):
            return value
    return None


def _objects(items: list[Any]) -> list[dict[str, Any]]:
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise EnvelopeError(f"message {index} is a JSON {type(item).__name__}, not an object")
    return items


def find_cursor(doc: Mapping[str, Any]) -> str | None:
    """The cursor (or next-page link) of a page; None when it says there is no next page."""
    for key in HAS_MORE_KEYS:
        if doc.get(key) is False:
            return None
    for scope in (doc, *(doc.get(b) for b in CURSOR_BLOCKS)):
        if not isinstance(scope, Mapping):
            continue
        for key in CURSOR_KEYS:
            if key in scope:
                value = _cursor_value(scope[key])
                if value is not None:
                    return value
    return None


def _cursor_value(value: Any) -> str | None:
    if value is None or value is False or value == "":
        return None
    if isinstance(value, bool):
        raise EnvelopeError("the cursor is `true`, not a cursor")
    if isinstance(value, str | int):
        return str(value)
    raise EnvelopeError(f"the cursor is a JSON {type(value).__name__}")


def message_time(message: Mapping[str, Any]) -> float | None:
    """Epoch seconds of a message's first time field, None when it has no readable one."""
    for key in TIME_KEYS:
        if key in message:
            return _epoch(message[key])
    return None


def _epoch(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value) / 1000 if abs(value) > _MS_THRESHOLD else float(value)
        return seconds if math.isfinite(seconds) else None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return None


def in_time_order(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages ordered by their time, stably.

    A message without a readable time stays right behind the message it followed in the
    API's order (it takes that message's time); before any timed message it stays in front.
    """
    keyed = []
    carried = -math.inf
    for index, message in enumerate(messages):
        when = message_time(message)
        if when is not None:
            carried = when
        keyed.append((carried, index, message))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [message for _, _, message in keyed]


def merge_page(
    collected: Sequence[dict[str, Any]], page: Iterable[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The messages so far plus a page's, without exact repeats of an earlier message.

    A page boundary that repeats the previous page's last message (an off-by-one cursor)
    must not double it; a message with a known id but other content is kept.
    """
    seen = {m["id"]: m for m in collected if isinstance(m.get("id"), str)}
    out = list(collected)
    for message in page:
        mid = message.get("id")
        if isinstance(mid, str) and mid in seen and seen[mid] == message:
            continue
        if isinstance(mid, str):
            seen.setdefault(mid, message)
        out.append(message)
    return out
