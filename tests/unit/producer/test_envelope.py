"""Envelope parsing: event type, key choice, and every refusal that routes to the DLQ."""

from __future__ import annotations

import pytest

from producer.envelope import Envelope, event_type_label, parse_envelope
from producer.errors import EnvelopeError


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"eventType":"session.created","id":"s-1"}', Envelope("session.created", b"s-1")),
        (
            b'{"eventType":"session.ended","id":"s-1","sessionId":"x"}',
            Envelope("session.ended", b"s-1"),
        ),
        (b'{"eventType":"session.updated","id":"s-2"}', Envelope("session.updated", b"s-2")),
        (
            b'{"eventType":"message.added","id":"msg_1","sessionId":"s-3"}',
            Envelope("message.added", b"s-3"),
        ),
        (b'{"eventType":"usage.updated","id":"u-1"}', Envelope("usage.updated", b"u-1")),
        (b'{"eventType":"brand.new","id":"n-1"}', Envelope("brand.new", b"n-1")),
        # Org-level and unknown events that name no session: stored raw, without a key.
        (b'{"eventType":"usage.updated","period":{}}', Envelope("usage.updated", None)),
        (b'{"eventType":"subscription.updated","id":""}', Envelope("subscription.updated", None)),
        (b'{"eventType":"brand.new"}', Envelope("brand.new", None)),
        (
            '{"eventType":"session.created","id":"é-ü"}'.encode(),
            Envelope("session.created", "é-ü".encode()),
        ),
        # duplicate keys: orjson keeps the last, as downstream parsers do
        (b'{"eventType":"x","id":"a","id":"b"}', Envelope("x", b"b")),
        (b' \n{"id":"k","eventType":"session.created"}\n ', Envelope("session.created", b"k")),
        # An integer beyond 64 bits is valid JSON (a customer's numeric id in sessionVariables).
        (
            b'{"eventType":"session.created","id":"s","v":{"n":123456789012345678901234567890}}',
            Envelope("session.created", b"s"),
        ),
    ],
)
def test_routes(body: bytes, expected: Envelope) -> None:
    assert parse_envelope(body) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not_json"),
        (b"{", "not_json"),
        (b"not json", "not_json"),
        (b'{"eventType":"session.created","id":"s","n":NaN}', "not_json"),
        (b'{"eventType":"session.created","id":"s","n":Infinity}', "not_json"),
        (b'{"eventType":"session.created","id":"s","n":' + b"9" * 5000 + b"}", "not_json"),
        (b'{"eventType":"session.created","id":"\\ud800"}', "not_json"),
        (b'{"eventType":"session.created","id":"\xff"}', "not_json"),
        (b'{"eventType":"session.created","id":"\xed\xa0\x80"}', "not_json"),
        (b'{"a":' * 2000 + b"1" + b"}" * 2000, "not_json"),
        (b"[" * 1100 + b"]" * 1100, "not_json"),
        (b'{"eventType":"session.created","id":"s"} trailing', "not_json"),
        (b"[]", "not_object"),
        (b'"session.created"', "not_object"),
        (b"null", "not_object"),
        (b"42", "not_object"),
        (b"{}", "no_event_type"),
        (b'{"eventType":7,"id":"s"}', "no_event_type"),
        (b'{"eventType":"","id":"s"}', "no_event_type"),
        (b'{"eventType":null,"id":"s"}', "no_event_type"),
        (b'{"eventType":"session.created"}', "no_key"),
        (b'{"eventType":"session.created","id":""}', "no_key"),
        (b'{"eventType":"session.created","id":42}', "no_key"),
        (b'{"eventType":"session.created","id":{"a":1}}', "no_key"),
        (b'{"eventType":"message.added","id":"msg_1"}', "no_key"),
        (b'{"eventType":"session.updated","state":"OPEN"}', "no_key"),
    ],
)
def test_refusals(body: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as err:
        parse_envelope(body)
    assert err.value.reason == reason


def test_labels_are_bounded() -> None:
    assert event_type_label("session.ended") == "session.ended"
    assert event_type_label("knowledge_store.updated") == "knowledge_store.updated"
    assert event_type_label("x" * 1000) == "other"
