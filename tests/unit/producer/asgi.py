"""Driving the producer's ASGI app directly: a fake publisher, signed requests, answers."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from svix.webhooks import Webhook

from producer.app import ProducerApp
from sessionflow.raw_record import RecordHeaders

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# Where a request arrived (ASGI scope["server"]): the settings' default ports.
ON_PUBLIC, ON_ADMIN = ("127.0.0.1", 8080), ("127.0.0.1", 8081)
BODY = b'{"eventType":"session.created","id":"7b0c5a4e-0000-4000-8000-000000000001","state":"OPEN"}'


class FakePublisher:
    def __init__(self) -> None:
        self.ready = True
        self.clients_replaced: dict[str, int] = {}
        self.raw: list[tuple[bytes | None, bytes, RecordHeaders]] = []
        self.dlq: list[tuple[bytes | None, bytes, RecordHeaders]] = []
        self.error: Exception | None = None
        self.started = self.stopped = False

    async def start(self) -> None:
        if self.error is not None:
            raise self.error
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def publish_raw(self, key: bytes | None, body: bytes, headers: RecordHeaders) -> None:
        if self.error is not None:
            raise self.error
        self.raw.append((key, body, headers))

    async def publish_dlq(self, key: bytes | None, body: bytes, headers: RecordHeaders) -> None:
        if self.error is not None:
            raise self.error
        self.dlq.append((key, body, headers))


class Response:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        start = messages[0] if messages else {}
        self.status: int | None = start.get("status")
        self.headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
        self.body = b"".join(m.get("body", b"") for m in messages[1:])

    def json(self) -> Any:
        return orjson.loads(self.body)


async def call(
    app: ProducerApp,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    chunks: Sequence[bytes] = (b"",),
    *,
    delay: float = 0.0,
    disconnect: bool = False,
    server: tuple[str, int | None] | None = ON_PUBLIC,
) -> Response:
    pending = list(chunks)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if disconnect or not pending:
            return {"type": "http.disconnect"}
        if delay:
            await asyncio.sleep(delay)
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": raw_headers,
        "server": server,
    }
    await app(scope, receive, send)
    return Response(sent)


def signed(body: bytes = BODY, *, msg_id: str = "msg_1", family: str = "svix") -> dict[str, str]:
    now = datetime.now(tz=UTC)
    sig = Webhook(SECRET).sign(msg_id, now, body.decode("utf-8", "replace"))
    return {
        "content-type": "application/json",
        f"{family}-id": msg_id,
        f"{family}-timestamp": str(int(now.timestamp())),
        f"{family}-signature": sig,
    }
