"""Driving the producer's app: a fake publisher, signed requests, answers from either listener."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from svix.webhooks import Webhook

from producer.app import ProducerApp
from producer.publisher import Delivered
from sessionflow.raw_record import RecordHeaders
from tests.http_wire import read_response
from tests.polling import wait_until

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# Which listener a request goes to: the public one (producer/http1.py) or the admin one (ASGI).
ON_PUBLIC: Literal["public"] = "public"
ON_ADMIN: Literal["admin"] = "admin"
BODY = b'{"eventType":"session.created","id":"7b0c5a4e-0000-4000-8000-000000000001","state":"OPEN"}'


class FakePublisher:
    """Kafka in memory: records kept, acknowledged on the loop's next turn.

    `error` is raised when a record is handed over (Kafka cannot take it at all); `failure` is
    what the delivery report says instead of an acknowledgement (taken, then not stored).
    """

    def __init__(self) -> None:
        self.ready = True
        self.clients_replaced: dict[str, int] = {}
        self.raw: list[tuple[bytes | None, bytes, RecordHeaders]] = []
        self.dlq: list[tuple[bytes | None, bytes, RecordHeaders]] = []
        self.error: Exception | None = None
        self.failure: Exception | None = None
        self.started = self.stopped = False

    async def start(self) -> None:
        if self.error is not None:
            raise self.error
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def publish_raw(
        self, key: bytes | None, body: bytes, headers: RecordHeaders, done: Delivered
    ) -> None:
        self._publish(self.raw, (key, body, headers), done)

    def publish_dlq(
        self, key: bytes | None, body: bytes, headers: RecordHeaders, done: Delivered
    ) -> None:
        self._publish(self.dlq, (key, body, headers), done)

    def _publish(
        self,
        into: list[tuple[bytes | None, bytes, RecordHeaders]],
        record: tuple[bytes | None, bytes, RecordHeaders],
        done: Delivered,
    ) -> None:
        if self.error is not None:
            raise self.error
        if self.failure is None:
            into.append(record)
        self._report(done, self.failure)

    def _report(self, done: Delivered, failure: Exception | None) -> None:
        asyncio.get_running_loop().call_soon(done, failure)


class Response:
    def __init__(self, status: int | None, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()

    @classmethod
    def of_asgi(cls, messages: list[dict[str, Any]]) -> Response:
        start = messages[0] if messages else {}
        headers = {k.decode(): v.decode() for k, v in start.get("headers", [])}
        return cls(start.get("status"), headers, b"".join(m.get("body", b"") for m in messages[1:]))


async def call(
    app: ProducerApp,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    chunks: Sequence[bytes] = (b"",),
    *,
    delay: float = 0.0,
    disconnect: bool = False,
    server: Literal["public", "admin"] = ON_PUBLIC,
) -> Response:
    """One request: on the public listener over loopback (the `app` fixture serves it), or to
    the admin listener's ASGI app directly. `chunks` are written apart, `delay` between them;
    with `disconnect` the client leaves after the head: no answer (status None)."""
    if server == ON_ADMIN:
        return await _asgi(app, method, path)
    head = [f"{method} {path} HTTP/1.1", "host: test"]
    fields = {k.lower(): v for k, v in (headers or {}).items()}
    fields.setdefault("content-length", str(sum(len(c) for c in chunks)))
    head += [f"{k}: {v}" for k, v in fields.items()]
    reader, writer = await asyncio.open_connection(*app.public.address)
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if disconnect:
            return Response(None, {}, b"")
        with contextlib.suppress(ConnectionError):  # answered and closed before the last chunk
            for i, chunk in enumerate(chunks):
                if i and delay:
                    await asyncio.sleep(delay)
                writer.write(chunk)
                await writer.drain()
        return Response(*await read_response(reader, head_only=method == "HEAD"))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def metrics_once(app: ProducerApp, line: str, timeout_s: float = 2.0) -> str:
    """The admin listener's /metrics once it has `line` (the public listener's work is async)."""
    texts: list[str] = []

    async def has_line() -> bool:
        texts.append((await call(app, "GET", "/metrics", server=ON_ADMIN)).text)
        return line in texts[-1]

    await wait_until(has_line, line, timeout_s)
    return texts[-1]


async def _asgi(app: ProducerApp, method: str, path: str) -> Response:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app({"type": "http", "method": method, "path": path, "headers": []}, receive, send)
    return Response.of_asgi(sent)


def signed(body: bytes = BODY, *, msg_id: str = "msg_1", family: str = "svix") -> dict[str, str]:
    now = datetime.now(tz=UTC)
    sig = Webhook(SECRET).sign(msg_id, now, body.decode("utf-8", "replace"))
    return {
        "content-type": "application/json",
        f"{family}-id": msg_id,
        f"{family}-timestamp": str(int(now.timestamp())),
        f"{family}-signature": sig,
    }
