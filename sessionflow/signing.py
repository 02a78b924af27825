"""Svix / Standard Webhooks signing: the `v1,<base64>` HMAC-SHA256 signatures and their headers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
from collections.abc import Sequence
from enum import StrEnum

from sessionflow.errors import SessionflowError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


class SigningError(SessionflowError, ValueError):
    """A webhook secret is not a base64 key (optionally prefixed with `whsec_`)."""


class HeaderFamily(StrEnum):
    SVIX = "svix"  # svix-id, svix-timestamp, svix-signature
    WEBHOOK = "webhook"  # the Standard Webhooks names: webhook-id, ...


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret, decoded as the svix library does."""
    encoded = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        # Like the reference: tolerate unpadded base64.
        unpadded = encoded.rstrip("=")
        key = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SigningError("webhook secret is not valid base64 after the whsec_ prefix") from exc
    if not key:
        raise SigningError("webhook secret is empty")
    return key


def new_secret() -> str:
    """A fresh random secret in Svix's format: 24 random bytes, base64, `whsec_` prefix."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(24)).decode("ascii")


def sign_with_key(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature over `"{msg_id}.{timestamp}.{body}"`."""
    return sign_with_key(decode_secret(secret), msg_id, timestamp, body)


class Signer:
    """Signs with every configured secret, as Svix does while an endpoint's secret rotates."""

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise SigningError("at least one webhook secret is needed")
        self._keys = tuple(decode_secret(s) for s in secrets)

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The signature header value: one `v1,...` per secret, space-separated."""
        return " ".join(sign_with_key(k, msg_id, timestamp, body) for k in self._keys)

    def headers(
        self, family: HeaderFamily, msg_id: str, timestamp: int, body: bytes
    ) -> dict[str, str]:
        return build_headers(family, msg_id, timestamp, self.signature(msg_id, timestamp, body))


def build_headers(
    family: HeaderFamily, msg_id: str, timestamp: int, signature: str
) -> dict[str, str]:
    """The three signature headers in the given family's names."""
    prefix = family.value
    return {
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(timestamp),
        f"{prefix}-signature": signature,
    }
