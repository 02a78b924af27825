"""Page envelopes, cursors, message times and order: the tolerant reading of undocumented answers."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enricher.envelope import find_cursor, in_time_order, merge_page, message_time, parse_page
from enricher.errors import EnvelopeError

M1 = {"id": "msg_1", "role": "USER", "content": "hi"}
M2 = {"id": "msg_2", "role": "ASSISTANT", "content": "hello", "unknownField": {"x": [1]}}


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("doc", "cursor"),
    [
        ([M1, M2], None),
        ({"messages": [M1, M2]}, None),
        ({"data": [M1, M2], "nextCursor": "abc"}, "abc"),
        ({"items": [M1, M2], "next_cursor": 42}, "42"),
        ({"messages": [M1, M2], "next": "/api/v1/x?cursor=2"}, "/api/v1/x?cursor=2"),
        ({"data": {"messages": [M1, M2], "nextCursor": "in"}}, "in"),
        ({"data": {"messages": [M1, M2]}, "meta": {"nextCursor": "out"}}, "out"),
        ({"data": [M1, M2], "pagination": {"next_cursor": "p"}}, "p"),
        ({"data": [M1, M2], "links": {"next": "https://h/n"}}, "https://h/n"),
        ({"data": [M1, M2], "nextCursor": "abc", "hasMore": False}, None),
        ({"data": [M1, M2], "nextCursor": None}, None),
        ({"data": [M1, M2], "nextCursor": ""}, None),
    ],
)
def test_every_envelope_yields_the_messages_verbatim_and_the_cursor(
    doc: Any, cursor: str | None
) -> None:
    page = parse_page(body(doc))
    assert page.messages == [M1, M2]
    assert page.cursor == cursor


def test_an_empty_body_is_an_empty_last_page() -> None:
    page = parse_page(b"")
    assert (page.messages, page.cursor) == ([], None)


def test_integers_beyond_64_bits_stay_exact() -> None:
    page = parse_page(b'[{"id": "msg_1", "n": 123456789012345678901234567890}]')
    assert page.messages[0]["n"] == 123456789012345678901234567890


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"<html>", "not JSON"),
        (b'"text"', "JSON str"),
        (b'{"result": []}', "no messages array"),
        (b'[{"id": 1}, "two"]', "message 1 is a JSON str"),
        (b'{"data": [], "nextCursor": {"a": 1}}', "cursor is a JSON dict"),
        (b'{"data": [], "nextCursor": true}', "cursor is `true`"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_unreadable_bodies_say_why(raw: bytes, says: str) -> None:
    with pytest.raises(EnvelopeError, match=says.replace("(", r"\(")):
        parse_page(raw)


def test_find_cursor_prefers_the_top_level() -> None:
    assert find_cursor({"nextCursor": "a", "meta": {"nextCursor": "b"}}) == "a"


@pytest.mark.parametrize(
    ("message", "epoch"),
    [
        ({"createdAt": "2025-01-01T00:00:01Z"}, 1735689601.0),
        ({"created_at": "2025-01-01T00:00:01.500+00:00"}, 1735689601.5),
        ({"timestamp": "2025-01-01T00:00:01"}, 1735689601.0),  # naive: UTC
        ({"sentAt": 1735689601}, 1735689601.0),
        ({"time": 1735689601500}, 1735689601.5),  # milliseconds
        ({"createdAt": "yesterday"}, None),
        ({"createdAt": True}, None),
        ({"content": "no time"}, None),
    ],
)
def test_message_time_reads_common_fields_and_formats(
    message: dict[str, Any], epoch: float | None
) -> None:
    assert message_time(message) == epoch


def test_in_time_order_sorts_timed_messages_and_keeps_untimed_behind_their_predecessor() -> None:
    a = {"id": "a", "createdAt": "2025-01-01T00:00:03Z"}
    b = {"id": "b"}  # follows a in the API's order
    c = {"id": "c", "createdAt": "2025-01-01T00:00:01Z"}
    d = {"id": "d", "createdAt": "2025-01-01T00:00:01Z"}  # a tie keeps the API's order
    first = {"id": "first"}
    assert [m["id"] for m in in_time_order([first, a, b, c, d])] == ["first", "c", "d", "a", "b"]


timed = st.fixed_dictionaries(
    {"id": st.text(max_size=3)},
    optional={"createdAt": st.integers(min_value=0, max_value=10**6)},
)


@given(st.lists(timed, max_size=30))
def test_in_time_order_is_a_stable_permutation_sorted_by_time(
    messages: list[dict[str, Any]],
) -> None:
    ordered = in_time_order(messages)
    position = {id(m): i for i, m in enumerate(messages)}
    assert sorted(map(id, ordered)) == sorted(map(id, messages))
    times = [m["createdAt"] for m in ordered if "createdAt" in m]
    assert times == sorted(times)
    # Equal times keep the API's order.
    for earlier, later in itertools.pairwise(ordered):
        if earlier.get("createdAt", -1) == later.get("createdAt", -2):
            assert position[id(earlier)] < position[id(later)]


def test_merge_page_drops_only_exact_repeats() -> None:
    changed = M2 | {"content": "edited"}
    merged = merge_page([M1, M2], [M2, changed, {"id": "msg_3"}, {"no": "id"}, {"no": "id"}])
    assert merged == [M1, M2, changed, {"id": "msg_3"}, {"no": "id"}, {"no": "id"}]
