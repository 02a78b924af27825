"""Our signatures agree with the official svix library on every vector, in both header families."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from svix.webhooks import Webhook, WebhookVerificationError

from sessionflow.signing import (
    HeaderFamily,
    Signer,
    SigningError,
    build_headers,
    decode_secret,
    new_secret,
    sign,
)

# The Standard Webhooks / Svix documentation's test vector.
DOC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DOC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
DOC_TIMESTAMP = 1614265330
DOC_BODY = b'{"test": 2432232314}'
DOC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

secrets_st = st.binary(min_size=1, max_size=64).map(
    lambda key: "whsec_" + base64.b64encode(key).decode()
)
msg_ids = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_",
    min_size=1,
    max_size=40,
)
bodies = st.text(max_size=300).map(str.encode)
timestamps = st.integers(min_value=0, max_value=2**33)


def test_documented_vector() -> None:
    assert sign(DOC_SECRET, DOC_MSG_ID, DOC_TIMESTAMP, DOC_BODY) == DOC_SIGNATURE


@given(secret=secrets_st, msg_id=msg_ids, timestamp=timestamps, body=bodies)
def test_agrees_with_the_svix_library(
    secret: str, msg_id: str, timestamp: int, body: bytes
) -> None:
    expected = Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode()
    )
    assert sign(secret, msg_id, timestamp, body) == expected


@pytest.mark.parametrize("family", list(HeaderFamily))
@given(msg_id=msg_ids, body=bodies)
def test_headers_verify_with_the_svix_library_in_both_families(
    family: HeaderFamily, msg_id: str, body: bytes
) -> None:
    secret = DOC_SECRET
    headers = Signer([secret]).headers(family, msg_id, int(time.time()), body)
    assert set(headers) == {f"{family}-id", f"{family}-timestamp", f"{family}-signature"}
    Webhook(secret).verify(body, headers)


def test_every_rotated_secret_verifies_and_a_foreign_one_does_not() -> None:
    old, new, foreign = new_secret(), new_secret(), new_secret()
    body = b'{"id":"s1","eventType":"session.created"}'
    headers = Signer([old, new]).headers(HeaderFamily.SVIX, "msg_1", int(time.time()), body)
    assert len(headers["svix-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(foreign).verify(body, headers)


def test_a_changed_body_or_stale_timestamp_fails_verification() -> None:
    body = b'{"a":1}'
    fresh = Signer([DOC_SECRET]).headers(HeaderFamily.WEBHOOK, "msg_1", int(time.time()), body)
    with pytest.raises(WebhookVerificationError):
        Webhook(DOC_SECRET).verify(b'{"a":2}', fresh)
    stale = Signer([DOC_SECRET]).headers(
        HeaderFamily.WEBHOOK, "msg_1", int(time.time()) - 600, body
    )
    with pytest.raises(WebhookVerificationError):
        Webhook(DOC_SECRET).verify(body, stale)


def test_build_headers_uses_the_family_names() -> None:
    assert build_headers(HeaderFamily.WEBHOOK, "msg_x", 12, "v1,abc") == {
        "webhook-id": "msg_x",
        "webhook-timestamp": "12",
        "webhook-signature": "v1,abc",
    }


def test_decode_secret_accepts_prefix_and_missing_padding() -> None:
    key = b"abcde"
    encoded = base64.b64encode(key).decode()
    assert encoded.endswith("=")
    assert decode_secret("whsec_" + encoded) == key
    assert decode_secret(encoded.rstrip("=")) == key
    assert decode_secret(f"  whsec_{encoded}\n") == key


@pytest.mark.parametrize("bad", ["whsec_", "", "whsec_!!!!", "whsec_a", "whsec_abc$"])
def test_decode_secret_rejects_non_keys(bad: str) -> None:
    with pytest.raises(SigningError):
        decode_secret(bad)


def test_signer_needs_a_secret() -> None:
    with pytest.raises(SigningError):
        Signer([])


def test_new_secret_is_random_and_in_svix_format() -> None:
    a, b = new_secret(), new_secret()
    assert a != b
    assert a.startswith("whsec_")
    assert len(decode_secret(a)) == 24
