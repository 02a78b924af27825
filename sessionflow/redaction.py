"""Personal data out of what operators are shown: phone numbers masked, session variables hidden.

Pure functions over parsed JSON (a webhook body, a completed or incomplete record, a table
view): every `customerPhoneNumber` keeps only its last 2 digits and every `sessionVariables`
object keeps its keys but not its values, wherever they appear (the contract puts them under
`metadata`; a copy elsewhere, e.g. in `analysis.extractedData`, is no less personal).
`full=True` is the explicit, unredacted view. Nothing here changes its input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

REDACTED: Final = "[redacted]"
PHONE_FIELD: Final = "customerPhoneNumber"
VARIABLES_FIELD: Final = "sessionVariables"
SHOWN_DIGITS: Final = 2
# Below this many digits the last two are too large a share of the number: none are shown.
MIN_DIGITS_TO_SHOW: Final = 6
_DIGITS: Final = frozenset("0123456789")

JsonValue = object


def mask_phone_number(value: JsonValue) -> JsonValue:
    """`+14155550100` -> `+*********00`; None stays None, anything else is REDACTED.

    Only the digits count (spaces, dashes and any other characters are dropped), and a
    leading `+` is kept, so the shape says "a phone number" and the tail tells two apart.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        return REDACTED
    digits = [c for c in value if c in _DIGITS]
    if len(digits) < MIN_DIGITS_TO_SHOW:
        return REDACTED
    plus = "+" if value.lstrip().startswith("+") else ""
    return plus + "*" * (len(digits) - SHOWN_DIGITS) + "".join(digits[-SHOWN_DIGITS:])


def hide_session_variables(value: JsonValue) -> JsonValue:
    """The keys of a `sessionVariables` object with every value REDACTED; None stays None."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict.fromkeys(value, REDACTED)
    return REDACTED


def redact(document: JsonValue, *, full: bool = False) -> JsonValue:
    """A redacted copy of a parsed JSON document; with `full=True`, the document itself."""
    if full:
        return document
    return _walk(document)


def redact_body(body: bytes, *, full: bool = False) -> JsonValue:
    """A raw webhook body for display: parsed and redacted.

    Bytes that are not JSON (a dead letter) cannot be searched for personal data: they are
    withheld whole unless `full`, which shows them as text.
    """
    try:
        # The stdlib, not orjson: exact integers beyond 64 bits (orjson makes them floats).
        document: JsonValue = json.loads(body)
    except ValueError:  # not UTF-8, not JSON
        return body.decode("utf-8", "backslashreplace") if full else REDACTED
    return redact(document, full=full)


def _walk(value: JsonValue) -> JsonValue:
    if isinstance(value, Mapping):
        out: dict[object, JsonValue] = {}
        for key, item in value.items():
            if key == PHONE_FIELD:
                out[key] = mask_phone_number(item)
            elif key == VARIABLES_FIELD:
                out[key] = hide_session_variables(item)
            else:
                out[key] = _walk(item)
        return out
    if isinstance(value, list | tuple):
        return [_walk(item) for item in value]
    return value
