"""The producer against hostile requests: malformed, oversized, slow or odd; never a 5xx."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

import pytest

from sessionflow.topics import Topics
from tests.integration.producer_fixtures import (
    RunningProducer,
    build_request,
    consume,
    raw_http,
    signed_headers,
    svix_headers,
    valid_body,
)

pytestmark = pytest.mark.integration


MIB = 1024 * 1024


def signed(
    body: bytes | None = None, *, headers: dict[str, str] | None = None, **request: Any
) -> Callable[[], bytes]:
    """A request factory: `body` (else a fresh valid one) signed when called, the signature
    headers overridden by `headers`; `request` goes to build_request."""

    def make() -> bytes:
        b = valid_body() if body is None else body
        return build_request(b, {**signed_headers(b), **(headers or {})}, **request)

    return make


# (name, request factory, expected status, where a 2xx must land: "raw" | "dlq" | None)
HOSTILE: list[tuple[str, Callable[[], bytes], int, str | None]] = [
    (
        "deep nesting arrays",
        signed(b"[" * 100_000 + b"]" * 100_000),
        202,
        "dlq",
    ),
    (
        "deep nesting objects",
        signed(b'{"a":' * 5000 + b"1" + b"}" * 5000),
        202,
        "dlq",
    ),
    (
        "5000-digit integer",
        signed(b'{"eventType":"session.created","id":"s1","n":' + b"7" * 5000 + b"}"),
        202,
        "dlq",
    ),
    (
        "NaN",
        signed(b'{"eventType":"session.created","id":"s1","n":NaN}'),
        202,
        "dlq",
    ),
    (
        "Infinity",
        signed(b'{"eventType":"session.created","id":"s1","n":-Infinity}'),
        202,
        "dlq",
    ),
    (
        "duplicate keys",
        signed(b'{"eventType":"session.created","id":"a","id":"b"}'),
        202,
        "raw",
    ),
    (
        "lone surrogate escape",
        signed(b'{"eventType":"session.created","id":"\\udc00"}'),
        202,
        "dlq",
    ),
    (
        "non-UTF-8 bytes",
        signed(b'{"eventType":"session.created","id":"\xc3\x28"}'),
        202,
        "dlq",
    ),
    ("empty body", signed(b""), 202, "dlq"),
    ("whitespace body", signed(b" \n "), 202, "dlq"),
    ("top-level array", signed(b"[1,2]"), 202, "dlq"),
    ("top-level null", signed(b"null"), 202, "dlq"),
    (
        "eventType not a string",
        signed(b'{"eventType":1,"id":"x"}'),
        202,
        "dlq",
    ),
    (
        "message.added without sessionId",
        signed(b'{"eventType":"message.added","id":"m"}'),
        202,
        "dlq",
    ),
    ("2 MiB body", lambda: build_request(b"x" * (2 * MIB), signed_headers(b"x")), 413, None),
    (
        "2 MiB chunked body",
        lambda: build_request(b"x" * (2 * MIB), signed_headers(b"x"), chunked=True),
        413,
        None,
    ),
    (
        "chunked without content-length",
        signed(chunked=True),
        202,
        "raw",
    ),
    (
        "20 KB extra header",
        signed(extra=[(b"X-Padding", b"p" * 20_000)]),
        202,
        "raw",
    ),
    (
        "20 KB signature header",
        signed(headers={"svix-signature": "v1," + "A" * 20_000}),
        401,
        None,
    ),
    (
        "text/plain",
        signed(content_type="text/plain"),
        415,
        None,
    ),
    (
        "no content type",
        signed(content_type=None),
        415,
        None,
    ),
    (
        "multipart",
        signed(content_type="multipart/form-data; boundary=x"),
        415,
        None,
    ),
    ("unsigned", lambda: build_request(valid_body()), 401, None),
    (
        "wrong secret",
        lambda: (
            b := valid_body(),
            build_request(
                b, svix_headers(b.decode(), secret="whsec_" + base64.b64encode(b"w" * 24).decode())
            ),
        )[1],
        401,
        None,
    ),
    (
        "stale timestamp",
        lambda: (
            b := valid_body(),
            build_request(b, svix_headers(b.decode(), ts=int(time.time()) - 400)),
        )[1],
        401,
        None,
    ),
    (
        "future timestamp",
        lambda: (
            b := valid_body(),
            build_request(b, svix_headers(b.decode(), ts=int(time.time()) + 400)),
        )[1],
        401,
        None,
    ),
    (
        "timestamp not a number",
        signed(headers={"svix-timestamp": "yesterday"}),
        401,
        None,
    ),
    (
        "signature without comma",
        signed(headers={"svix-signature": "v1abc"}),
        401,
        None,
    ),
    (
        "signature bad base64",
        signed(headers={"svix-signature": "v1,abc"}),
        401,
        None,
    ),
    (
        "non-ASCII bytes in timestamp",
        lambda: (
            b := valid_body(),
            build_request(
                b,
                {k: v for k, v in signed_headers(b).items() if k != "svix-timestamp"},
                extra=[(b"svix-timestamp", b"\xff\xfe")],
            ),
        )[1],
        401,
        None,
    ),
    (
        "body tampered after signing",
        lambda: (b := valid_body(), build_request(b + b" ", signed_headers(b)))[1],
        401,
        None,
    ),
    ("GET on the endpoint", lambda: build_request(b"", method="GET"), 405, None),
    (
        "PUT on the endpoint",
        signed(method="PUT"),
        405,
        None,
    ),
    (
        "unknown path",
        signed(path="/webhooks/other"),
        404,
        None,
    ),
    ("10 KB path", lambda: build_request(b"{}", path="/" + "a" * 10_000), 404, None),
    (
        "invalid content-length",
        lambda: (
            b"POST /webhooks/agntix HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}"
        ),
        400,
        None,
    ),
]


async def test_hostile_inputs_never_get_a_5xx(producer: RunningProducer) -> None:
    assert len(HOSTILE) >= 25
    failures = []
    expected_raw = expected_dlq = 0
    for name, make, status, where in HOSTILE:
        try:
            resp = await raw_http(producer.port, make())
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            failures.append(f"{name}: no answer ({exc!r})")
            continue
        if resp.status != status or resp.status >= 500:
            failures.append(f"{name}: {resp.status} {resp.body[:200]!r}, expected {status}")
        expected_raw += where == "raw"
        expected_dlq += where == "dlq"
    assert not failures, "\n".join(failures)
    topics = Topics.for_settings(producer.settings)
    assert (
        len(await consume(producer.settings, topics.raw, expected_raw + 1, timeout_s=3))
        == expected_raw
    )
    assert (
        len(await consume(producer.settings, topics.dlq, expected_dlq + 1, timeout_s=3))
        == expected_dlq
    )
