"""A fake of the Agntix API on loopback: a real aiohttp server with scripted answers per session.

It runs its own event loop in a thread, so both async tests and tests that block on
subprocesses can use it. Every request is recorded (arrival time, session, cursor, the
authentication it carried) and the peak number of requests in progress is kept.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.integration.conftest import free_port

API_KEY = "pk_test_" + "k3y" * 8
API_TOKEN = "eyJhbGciOiJIUzI1NiJ9.test-token-" + "t0k" * 6
PATH = "/api/v1/chat/sessions/{id}/messages"


@dataclass(frozen=True)
class Reply:
    """One scripted answer. `drop`: close the connection half-way through the body."""

    status: int = 200
    body: Any = None  # JSON-able, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False
    chunked_bytes: int = 0  # stream this many bytes without a Content-Length


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the request arrived
    session_id: str
    cursor: str | None
    api_key: str | None
    authorization: str | None


def message(n: int, *, at: str | None = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": f"msg_{n:04d}", "role": "USER", "content": f"message {n}"}
    if at is not None:
        doc["createdAt"] = at
    return doc | extra


def transcript(count: int) -> list[dict[str, Any]]:
    """A plain conversation with increasing times, alternating user and assistant."""
    return [
        message(
            i,
            at=f"2025-01-01T10:00:{i:02d}.000Z",
            role="USER" if i % 2 == 0 else "ASSISTANT",
        )
        for i in range(count)
    ]


class FakeAgntix:
    def __init__(self, *, api_key: str | None = API_KEY, token: str | None = None) -> None:
        self.api_key = api_key
        self.token = token
        self.port = free_port()
        self.scripts: dict[str, list[Reply]] = {}
        self.seen: list[Seen] = []
        self.active = 0
        self.peak = 0
        self.default_messages = 3
        self.refuse_auth = False
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, session_id: str, *replies: Reply) -> None:
        """Answers for one session in order; the last one repeats."""
        self.scripts[session_id] = list(replies)

    def requests_for(self, session_id: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.session_id == session_id]

    def count(self) -> int:
        with self._lock:
            return len(self.seen)

    # -- server ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get(PATH, self._messages)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        # Handlers still sleeping (a client that was killed mid-request) end here, not at exit.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _next_reply(self, session_id: str, cursor: str | None) -> Reply:
        script = self.scripts.get(session_id)
        if script:
            return script.pop(0) if len(script) > 1 else script[0]
        return Reply(body=transcript(self.default_messages))

    def _authorized(self, request: web.Request) -> bool:
        if self.refuse_auth:
            return False
        if self.api_key is not None and request.headers.get("x-api-key") == self.api_key:
            return True
        return (
            self.token is not None
            and request.headers.get("Authorization") == f"Bearer {self.token}"
        )

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["id"]
        cursor = request.query.get("cursor")
        with self._lock:
            self.seen.append(
                Seen(
                    time.monotonic(),
                    session_id,
                    cursor,
                    request.headers.get("x-api-key"),
                    request.headers.get("Authorization"),
                )
            )
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if not self._authorized(request):
                return web.json_response({"error": "unauthorized"}, status=401)
            with self._lock:
                reply = self._next_reply(session_id, cursor)
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            return await self._send(request, reply)
        finally:
            with self._lock:
                self.active -= 1

    async def _send(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        if reply.drop:
            response = web.StreamResponse(status=200)
            response.content_length = 10_000
            await response.prepare(request)
            await response.write(b'[{"id": "msg_')
            assert request.transport is not None
            request.transport.close()
            return response
        if reply.chunked_bytes:
            response = web.StreamResponse(status=reply.status)
            response.enable_chunked_encoding()
            await response.prepare(request)
            sent = 0
            while sent < reply.chunked_bytes:
                await response.write(b" " * 65536)
                sent += 65536
            await response.write_eof()
            return response
        # The stdlib writes integers beyond 64 bits, which orjson refuses.
        body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        return web.Response(
            status=reply.status,
            body=body,
            headers={"Content-Type": "application/json", **reply.headers},
        )


def new_session_id() -> str:
    return str(uuid.uuid4())


def fake_api(**kwargs: Any) -> Iterator[FakeAgntix]:
    """Fixture body: a started fake, stopped afterwards."""
    fake = FakeAgntix(**kwargs)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
