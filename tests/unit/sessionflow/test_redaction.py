"""Redaction: examples, properties over any JSON, and every record the pipeline makes."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionflow.redaction import (
    PHONE_FIELD,
    REDACTED,
    VARIABLES_FIELD,
    hide_session_variables,
    mask_phone_number,
    redact,
    redact_body,
)
from streams.core import PendingSession, on_event, on_expiry
from streams.models import encode_output
from tests.unit.streams import samples

TTL = 172_800_000
PHONE = "+14155550123"

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_keys = st.sampled_from(["metadata", PHONE_FIELD, VARIABLES_FIELD, "id", "x"]) | st.text(
    max_size=8
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=5),
    max_leaves=30,
)


def digits(text: str) -> str:
    return "".join(c for c in text if c in "0123456789")


def fields(doc: Any, name: str) -> Iterator[Any]:
    """Every value stored under the key `name`, anywhere in the document."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == name:
                yield value
            yield from fields(value, name)
    elif isinstance(doc, list):
        for item in doc:
            yield from fields(item, name)


def without(doc: Any, names: set[str]) -> Any:
    if isinstance(doc, dict):
        return {k: without(v, names) for k, v in doc.items() if k not in names}
    if isinstance(doc, list | tuple):
        return [without(v, names) for v in doc]
    return doc


# -- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("+14155550123", "+*********23"),
        ("+1 (415) 555-0123", "+*********23"),
        ("004915112345678", "*************78"),
        ("+12345", REDACTED),  # too short to show anything
        ("", REDACTED),
        ("call me", REDACTED),
        (14155550123, REDACTED),
        (None, None),
    ],
)
def test_a_phone_number_keeps_only_its_last_two_digits(raw: Any, masked: Any) -> None:
    assert mask_phone_number(raw) == masked


def test_session_variables_keep_their_keys_and_lose_their_values() -> None:
    variables = samples.metadata()["sessionVariables"]
    assert hide_session_variables(variables) == dict.fromkeys(variables, REDACTED)
    assert hide_session_variables(["crm-1"]) == REDACTED
    assert hide_session_variables(None) is None


def test_a_session_event_is_redacted_and_the_full_view_is_explicit() -> None:
    event = samples.session_ended("7b0c5a4e-0000-4000-8000-000000000001")
    shown = redact(event)
    assert isinstance(shown, dict)
    assert shown["metadata"]["customerPhoneNumber"] == "+*********23"
    assert shown["metadata"]["sessionVariables"]["crmContactId"] == REDACTED
    assert shown["metadata"]["roomName"] == event["metadata"]["roomName"]
    # A copy elsewhere is masked too (the sample's analysis echoes the number).
    assert shown["analysis"]["customerPhoneNumber"] == "+*********23"
    assert shown["analysis"]["summary"] == event["analysis"]["summary"]
    assert redact(event, full=True) is event


def test_a_raw_body_is_parsed_and_redacted_and_what_is_not_json_is_withheld() -> None:
    body = samples.to_bytes(samples.session_created())  # holds an integer beyond 64 bits
    shown = redact_body(body)
    assert PHONE not in json.dumps(shown)
    assert json.loads(body) == redact_body(body, full=True)
    assert redact_body(b"\xff+14155550123") == REDACTED
    assert redact_body(b"+14155550123 not json", full=True) == "+14155550123 not json"


# -- properties -------------------------------------------------------------------------------


@given(st.text(max_size=40))
def test_no_phone_digit_but_the_last_two_is_ever_shown(raw: str) -> None:
    masked = mask_phone_number(raw)
    assert isinstance(masked, str)
    shown = digits(masked)
    assert shown in ("", digits(raw)[-2:])
    if shown:
        assert len(digits(raw)) >= 6
        assert masked.count("*") == len(digits(raw)) - 2


@given(json_values)
def test_redaction_hides_every_phone_number_and_variable_value_and_changes_nothing_else(
    doc: Any,
) -> None:
    before = copy.deepcopy(doc)
    shown = redact(doc)
    assert doc == before  # the input is left alone
    for phone in fields(shown, PHONE_FIELD):
        assert phone is None or phone == REDACTED or len(digits(phone)) == 2
    for variables in fields(shown, VARIABLES_FIELD):
        assert variables is None or variables == REDACTED or set(variables.values()) <= {REDACTED}
    assert without(shown, {PHONE_FIELD, VARIABLES_FIELD}) == without(
        doc, {PHONE_FIELD, VARIABLES_FIELD}
    )
    assert redact(doc, full=True) == before


@given(st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=6))
def test_the_keys_of_session_variables_are_always_shown(variables: dict[str, Any]) -> None:
    shown = redact({"metadata": {VARIABLES_FIELD: variables}})
    assert isinstance(shown, dict)
    assert list(shown["metadata"][VARIABLES_FIELD]) == list(variables)


# -- every record the pipeline makes ----------------------------------------------------------


def secrets_of(event: dict[str, Any]) -> list[str]:
    """Texts that must never appear in a redacted view of this event's records."""
    variables = event["metadata"]["sessionVariables"]
    values = [json.dumps(v, separators=(",", ":")) for v in variables.values()]
    return [
        event["metadata"]["customerPhoneNumber"],
        digits(event["metadata"]["customerPhoneNumber"])[:-2],
        # Short values ("2", "true") occur anywhere; the identifying ones are long.
        *(v for v in values if len(v) >= 8),
    ]


def test_completed_incomplete_and_pending_views_are_redacted() -> None:
    sid = "7b0c5a4e-0000-4000-8000-000000000002"
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    first = on_event(None, samples.envelope(created, "msg_c"), samples.T0_MS, TTL)
    pending = first.state
    assert isinstance(pending, PendingSession)
    paired = on_event(pending, samples.envelope(ended, "msg_e"), samples.T0_MS, TTL)
    expired = on_expiry(pending, samples.T0_MS + 2 * TTL, TTL, samples.T0_MS + 2 * TTL)
    (completed,) = paired.outputs
    (incomplete,) = expired.outputs
    views = [
        redact(json.loads(encode_output(completed))),
        redact(json.loads(encode_output(incomplete))),
        redact_body(pending.body),
    ]
    for view in views:
        text = json.dumps(view, separators=(",", ":"))
        for secret in secrets_of(created):
            assert secret not in text, (secret, text[:200])
        assert "+*********23" in text
        assert '"crmContactId":"[redacted]"' in text
