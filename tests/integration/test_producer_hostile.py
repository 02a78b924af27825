"""The producer against hostile requests: malformed, oversized, slow or odd; never a 5xx."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from pathlib import Path

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

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


MIB = 1024 * 1024
# (name, request factory, expected status, where a 2xx must land: "raw" | "dlq" | None)
HOSTILE: list[tuple[str, Callable[[], bytes], int, str | None]] = [
    (
        "deep nesting arrays",
        lambda: (b := b"[" * 100_000 + b"]" * 100_000, build_request(b, signed_headers(b)))[1],
        202,
        "dlq",
    ),
    (
        "deep nesting objects",
        lambda: (b := b'{"a":' * 5000 + b"1" + b"}" * 5000, build_request(b, signed_headers(b)))[1],
        202,
        "dlq",
    ),
    (
        "5000-digit integer",
        lambda: (
            b := b'{"eventType":"session.created","id":"s1","n":' + b"7" * 5000 + b"}",
            build_request(b, signed_headers(b)),
        )[1],
        202,
        "dlq",
    ),
    (
        "NaN",
        lambda: (
            b := b'{"eventType":"session.created","id":"s1","n":NaN}',
            build_request(b, signed_headers(b)),
        )[1],
        202,
        "dlq",
    ),
    (
        "Infinity",
        lambda: (
            b := b'{"eventType":"session.created","id":"s1","n":-Infinity}',
            build_request(b, signed_headers(b)),
        )[1],
        202,
        "dlq",
    ),
    (
        "duplicate keys",
        lambda: (
            b := b'{"eventType":"session.created","id":"a","id":"b"}',
            build_request(b, signed_headers(b)),
        )[1],
        202,
        "raw",
    ),
    (
        "lone surrogate escape",
        lambda: (
            b := b'{"eventType":"session.created","id":"\\udc00"}',
            build_request(b, signed_headers(b)),
        )[1],
        202,
        "dlq",
    ),
    (
        "non-UTF-8 bytes",
        lambda: (
            b := b'{"eventType":"session.created","id":"\xc3\x28"}',
            build_request(b, signed_headers(b)),
        )[1],
        202,
        "dlq",
    ),
    ("empty body", lambda: build_request(b"", signed_headers(b"")), 202, "dlq"),
    ("whitespace body", lambda: build_request(b" \n ", signed_headers(b" \n ")), 202, "dlq"),
    ("top-level array", lambda: build_request(b"[1,2]", signed_headers(b"[1,2]")), 202, "dlq"),
    ("top-level null", lambda: build_request(b"null", signed_headers(b"null")), 202, "dlq"),
    (
        "eventType not a string",
        lambda: (b := b'{"eventType":1,"id":"x"}', build_request(b, signed_headers(b)))[1],
        202,
        "dlq",
    ),
    (
        "message.added without sessionId",
        lambda: (
            b := b'{"eventType":"message.added","id":"m"}',
            build_request(b, signed_headers(b)),
        )[1],
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
        lambda: (b := valid_body(), build_request(b, signed_headers(b), chunked=True))[1],
        202,
        "raw",
    ),
    (
        "20 KB extra header",
        lambda: (
            b := valid_body(),
            build_request(b, signed_headers(b), extra=[(b"X-Padding", b"p" * 20_000)]),
        )[1],
        202,
        "raw",
    ),
    (
        "20 KB signature header",
        lambda: (
            b := valid_body(),
            build_request(b, {**signed_headers(b), "svix-signature": "v1," + "A" * 20_000}),
        )[1],
        401,
        None,
    ),
    (
        "text/plain",
        lambda: (b := valid_body(), build_request(b, signed_headers(b), content_type="text/plain"))[
            1
        ],
        415,
        None,
    ),
    (
        "no content type",
        lambda: (b := valid_body(), build_request(b, signed_headers(b), content_type=None))[1],
        415,
        None,
    ),
    (
        "multipart",
        lambda: (
            b := valid_body(),
            build_request(b, signed_headers(b), content_type="multipart/form-data; boundary=x"),
        )[1],
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
        lambda: (
            b := valid_body(),
            build_request(b, {**signed_headers(b), "svix-timestamp": "yesterday"}),
        )[1],
        401,
        None,
    ),
    (
        "signature without comma",
        lambda: (
            b := valid_body(),
            build_request(b, {**signed_headers(b), "svix-signature": "v1abc"}),
        )[1],
        401,
        None,
    ),
    (
        "signature bad base64",
        lambda: (
            b := valid_body(),
            build_request(b, {**signed_headers(b), "svix-signature": "v1,abc"}),
        )[1],
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
        lambda: (b := valid_body(), build_request(b, signed_headers(b), method="PUT"))[1],
        405,
        None,
    ),
    (
        "unknown path",
        lambda: (b := valid_body(), build_request(b, signed_headers(b), path="/webhooks/other"))[1],
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
