"""The verifier against the svix library: the same accept/reject on every case."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
import standardwebhooks.webhooks as std_webhooks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from svix.webhooks import Webhook

from producer.errors import VerificationError
from producer.verify import INVALID_SIGNATURE_FORMAT, WebhookVerifier, signature_header
from sessionflow.signing import decode_secret

# The Standard Webhooks reference test vector.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
NOW = datetime.fromtimestamp(VECTOR_TS, tz=UTC)
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-of-24-byte").decode()


@pytest.fixture(autouse=True)
def frozen_library_clock() -> Iterator[None]:
    """The library reads datetime.now(); pin it to NOW so that both sides see the same time."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: object = None) -> Frozen:
            return cls.fromtimestamp(VECTOR_TS, tz=UTC)

    with mock.patch.object(std_webhooks, "datetime", Frozen):
        yield


def svix_accepts(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except Exception:  # the library raises several types (ValueError, binascii.Error...)
        return False
    return True


def verify_str_headers(
    verifier: WebhookVerifier, body: bytes, headers: dict[str, str], now: datetime
) -> None:
    """The verifier fed str headers (either family) as the library takes them, picked by the
    producer's own mapping; HTTP carries bytes, so a header that does not encode is refused."""
    try:
        raw = {k.lower().encode(): v.encode() for k, v in headers.items()}
    except UnicodeEncodeError as exc:
        raise VerificationError(INVALID_SIGNATURE_FORMAT, "header is not encodable") from exc
    fields = (signature_header(raw, name) for name in (b"id", b"timestamp", b"signature"))
    verifier.verify(body, *fields, now=now)


def ours(secrets: list[str], body: bytes, headers: dict[str, str]) -> str | None:
    """None when accepted, else the reason code; any other exception fails the test."""
    verifier = WebhookVerifier([decode_secret(s) for s in secrets])
    try:
        verify_str_headers(verifier, body, headers, NOW)
    except VerificationError as exc:
        return exc.reason
    return None


def agree(secret: str, body: bytes, headers: dict[str, str]) -> str | None:
    reason = ours([secret], body, headers)
    assert (reason is None) == svix_accepts(secret, body, headers), (headers, reason)
    return reason


def signed(
    secret: str = VECTOR_SECRET,
    body: bytes = VECTOR_BODY,
    *,
    msg_id: str = VECTOR_ID,
    ts: int = VECTOR_TS,
    family: str = "svix",
) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode())
    return {
        f"{family}-id": msg_id,
        f"{family}-timestamp": str(ts),
        f"{family}-signature": signature,
    }


def test_reference_vector_is_accepted_by_both() -> None:
    headers = {"svix-id": VECTOR_ID, "svix-timestamp": str(VECTOR_TS), "svix-signature": VECTOR_SIG}
    assert agree(VECTOR_SECRET, VECTOR_BODY, headers) is None
    assert signed()["svix-signature"] == VECTOR_SIG


@pytest.mark.parametrize("family", ["svix", "webhook"])
def test_both_header_families(family: str) -> None:
    assert agree(VECTOR_SECRET, VECTOR_BODY, signed(family=family)) is None


def test_header_names_are_case_insensitive() -> None:
    headers = {k.upper(): v for k, v in signed().items()}
    assert agree(VECTOR_SECRET, VECTOR_BODY, headers) is None


def test_returns_the_verified_id() -> None:
    verifier = WebhookVerifier([decode_secret(VECTOR_SECRET)])
    got = verifier.verify(
        VECTOR_BODY, VECTOR_ID.encode(), str(VECTOR_TS).encode(), VECTOR_SIG.encode(), now=NOW
    )
    assert got == VECTOR_ID.encode()


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(-300, None), (300, None), (-301, "timestamp_too_old"), (301, "timestamp_too_new"), (0, None)],
)
def test_tolerance_boundaries(offset: int, reason: str | None) -> None:
    headers = signed(ts=VECTOR_TS + offset)
    assert agree(VECTOR_SECRET, VECTOR_BODY, headers) == reason


def test_rotation_any_configured_secret_matches() -> None:
    headers = signed(OTHER_SECRET)
    assert ours([VECTOR_SECRET, OTHER_SECRET], VECTOR_BODY, headers) is None
    assert ours([OTHER_SECRET, VECTOR_SECRET], VECTOR_BODY, headers) is None
    assert agree(VECTOR_SECRET, VECTOR_BODY, headers) == "no_matching_signature"


def test_wrong_secret_and_tampered_body() -> None:
    assert agree(OTHER_SECRET, VECTOR_BODY, signed()) == "no_matching_signature"
    assert agree(VECTOR_SECRET, b'{"test": 2432232315}', signed()) == "no_matching_signature"


def _with(**changes: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        **signed(),
        **{k.replace("_", "-"): v for k, v in changes.items()},
    }
    return {k: v for k, v in headers.items() if v is not None}


GOOD_SIG = VECTOR_SIG.split(",")[1]
MALFORMED = [
    # missing or empty headers
    (_with(svix_id=None), "missing_headers"),
    (_with(svix_timestamp=None), "missing_headers"),
    (_with(svix_signature=None), "missing_headers"),
    (_with(svix_id=""), "missing_headers"),
    (_with(svix_signature=""), "missing_headers"),
    ({}, "missing_headers"),
    # timestamps
    (_with(svix_timestamp="abc"), "invalid_timestamp"),
    (_with(svix_timestamp="nan"), "invalid_timestamp"),
    (_with(svix_timestamp="inf"), "invalid_timestamp"),
    (_with(svix_timestamp="-inf"), "invalid_timestamp"),
    (_with(svix_timestamp="1" * 400), "invalid_timestamp"),
    (_with(svix_timestamp="99999999999999"), "invalid_timestamp"),
    (_with(svix_timestamp=" "), "invalid_timestamp"),
    (_with(svix_timestamp="0x60377d72"), "invalid_timestamp"),
    (_with(svix_timestamp="0"), "timestamp_too_old"),
    (_with(svix_timestamp="-1614265330"), "timestamp_too_old"),
    (_with(svix_timestamp=str(VECTOR_TS + 10**6)), "timestamp_too_new"),
    # forms that float() reads as the same second: the library accepts them, so do we
    (_with(svix_timestamp=f" {VECTOR_TS} "), None),
    (_with(svix_timestamp=f"{VECTOR_TS}.9"), None),
    (_with(svix_timestamp="1.61426533e9"), None),
    (_with(svix_timestamp="1_614_265_330"), None),
    (_with(svix_timestamp=f"+{VECTOR_TS}"), None),
    # signature lists
    (_with(svix_signature="v1"), "invalid_signature_format"),
    (_with(svix_signature=GOOD_SIG), "invalid_signature_format"),
    (_with(svix_signature=f"v1,{GOOD_SIG},x"), "invalid_signature_format"),
    (_with(svix_signature=f"v1,{GOOD_SIG[:-2]}"), "invalid_signature_format"),
    (_with(svix_signature="v1,"), "no_matching_signature"),
    (_with(svix_signature="v1,!!!!"), "no_matching_signature"),
    (_with(svix_signature=f"v1,{GOOD_SIG}é"), "invalid_signature_format"),
    (_with(svix_signature=f"V1,{GOOD_SIG}"), "no_matching_signature"),
    (_with(svix_signature=f"v1a,{GOOD_SIG}"), "no_matching_signature"),
    (_with(svix_signature=f"v2,{GOOD_SIG}"), "no_matching_signature"),
    (_with(svix_signature=f"v2,garbage!! v1,{GOOD_SIG}"), None),
    (_with(svix_signature=f"v1,{'A' * 44} v1,{GOOD_SIG}"), None),
    (_with(svix_signature=f"v1,{GOOD_SIG} not-a-token"), None),
    (_with(svix_signature=f"not-a-token v1,{GOOD_SIG}"), "invalid_signature_format"),
    (_with(svix_signature=f"v1,{GOOD_SIG}  v1,x"), None),
    (_with(svix_signature=f"v1,x  v1,{GOOD_SIG}"), "invalid_signature_format"),
    (_with(svix_signature=f" v1,{GOOD_SIG}"), "invalid_signature_format"),
    (_with(svix_signature=f"v1,{GOOD_SIG}\t"), None),
    (_with(svix_signature=f"v1,{GOOD_SIG[:20]}"), "no_matching_signature"),
    (_with(svix_signature=f"v1,{GOOD_SIG[:21]}"), "invalid_signature_format"),
    (_with(svix_signature="v1," + base64.b64encode(b"\0" * 32).decode()), "no_matching_signature"),
    # ids: the signature covers the id
    (_with(svix_id="msg_other"), "no_matching_signature"),
    (_with(svix_id=" " + VECTOR_ID), "no_matching_signature"),
]


@pytest.mark.parametrize(("headers", "reason"), MALFORMED)
def test_malformed_headers_agree_with_library(headers: dict[str, str], reason: str | None) -> None:
    assert agree(VECTOR_SECRET, VECTOR_BODY, headers) == reason


def test_svix_family_wins_even_when_empty() -> None:
    webhook = signed(family="webhook")
    assert agree(VECTOR_SECRET, VECTOR_BODY, {**webhook, "svix-id": ""}) == "missing_headers"
    mixed = {
        "svix-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIG,
    }
    assert agree(VECTOR_SECRET, VECTOR_BODY, mixed) is None
    wrong_svix = {**webhook, "svix-signature": "v1,AAAA"}
    assert agree(VECTOR_SECRET, VECTOR_BODY, wrong_svix) == "no_matching_signature"


def test_raw_bytes_path_refuses_non_utf8_headers() -> None:
    verifier = WebhookVerifier([decode_secret(VECTOR_SECRET)])
    with pytest.raises(VerificationError) as err:
        verifier.verify(VECTOR_BODY, VECTOR_ID.encode(), b"\xff", VECTOR_SIG.encode(), now=NOW)
    assert err.value.reason == "invalid_timestamp"
    with pytest.raises(VerificationError) as err:
        verifier.verify(VECTOR_BODY, VECTOR_ID.encode(), b"1614265330", b"v1,\xff", now=NOW)
    assert err.value.reason == "invalid_signature_format"


def test_non_utf8_body_is_verified_as_bytes() -> None:
    # The library cannot take such a body (UnicodeDecodeError); we sign the raw bytes.
    import hashlib
    import hmac

    body = b'{"a": "\xff"}'
    mac = hmac.new(
        decode_secret(VECTOR_SECRET), f"{VECTOR_ID}.{VECTOR_TS}.".encode() + body, hashlib.sha256
    )
    sig = "v1," + base64.b64encode(mac.digest()).decode()
    verifier = WebhookVerifier([decode_secret(VECTOR_SECRET)])
    verifier.verify(body, VECTOR_ID.encode(), str(VECTOR_TS).encode(), sig.encode(), now=NOW)


def test_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one"):
        WebhookVerifier([])


_TOKENS = st.sampled_from(["v1", "v1a", "v2", "", "V1", "v1,", ",", " "])
_B64ISH = st.text(alphabet="ABCDEFGHabcdefgh0123456789+/=_-!. ,é", max_size=50)


@st.composite
def mutated_headers(draw: st.DrawFn) -> dict[str, str]:
    headers = signed(family=draw(st.sampled_from(["svix", "webhook"])))
    for name in list(headers):
        action = draw(st.sampled_from(["keep", "keep", "drop", "replace", "append", "prefix"]))
        text = draw(st.one_of(_B64ISH, _TOKENS, st.integers(-(10**12), 10**12).map(str)))
        if action == "drop":
            del headers[name]
        elif action == "replace":
            headers[name] = text
        elif action == "append":
            headers[name] += text
        elif action == "prefix":
            headers[name] = text + headers[name]
    if draw(st.booleans()):
        other = "webhook" if "svix-id" in headers or "svix-signature" in headers else "svix"
        extra = draw(st.sampled_from(["id", "timestamp", "signature"]))
        headers[f"{other}-{extra}"] = draw(_B64ISH)
    return headers


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(headers=mutated_headers(), body=st.sampled_from([VECTOR_BODY, b"{}", b""]))
def test_random_header_mutations_agree_with_library(headers: dict[str, str], body: bytes) -> None:
    agree(VECTOR_SECRET, body, headers)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(offset=st.integers(-400, 400), body=st.text(max_size=200))
def test_random_timestamps_and_bodies_agree_with_library(offset: int, body: str) -> None:
    raw = body.encode("utf-8", "surrogatepass")
    try:
        raw.decode()
    except UnicodeDecodeError:
        return
    reason = agree(VECTOR_SECRET, raw, signed(body=raw, ts=VECTOR_TS + offset))
    assert (reason is None) == (abs(offset) <= 300)


@settings(max_examples=300, deadline=None)
@given(
    offset=st.integers(-302, 302),
    fraction=st.sampled_from([0.0, 0.25, 0.5, 0.9999994, 0.9999996, 0.9999999]),
    signed_second=st.integers(0, 1),
)
def test_fractional_timestamps_are_floored_as_the_library_floors_them(
    offset: int, fraction: float, signed_second: int
) -> None:
    # Signed for the second below or above the header's value: which one matches depends on
    # the library's rounding to microseconds, and so does the tolerance at its edges.
    headers = signed(ts=VECTOR_TS + offset + signed_second)
    headers["svix-timestamp"] = repr(VECTOR_TS + offset + fraction)
    agree(VECTOR_SECRET, VECTOR_BODY, headers)


def test_tolerance_is_configurable() -> None:
    verifier = WebhookVerifier([decode_secret(VECTOR_SECRET)], tolerance_seconds=10)
    h = signed(ts=VECTOR_TS - 11)
    with pytest.raises(VerificationError, match="timestamp_too_old"):
        verify_str_headers(verifier, VECTOR_BODY, h, NOW)
    verify_str_headers(verifier, VECTOR_BODY, h, NOW - timedelta(seconds=1))
