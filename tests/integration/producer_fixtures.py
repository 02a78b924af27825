"""Shared helpers for producer integration tests: a live server, signing, raw HTTP, consuming."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import uvicorn
from svix.webhooks import Webhook

from producer.app import ProducerApp
from producer.server import ProducerServer, listeners, public_apart, server_config
from producer.settings import ProducerSettings
from sessionflow.signing import decode_secret
from tests.conftest import new_unique
from tests.http_wire import RawResponse, read_response
from tests.integration.conftest import free_port
from tests.kafka_helpers import reader

SECRET = "whsec_" + base64.b64encode(b"sessionflow-test-key-24b").decode()
TIMEOUT_S = 20.0


def make_settings(**overrides: Any) -> ProducerSettings:
    values: dict[str, Any] = {
        "webhook_secrets": SECRET,
        "topic_namespace": f"t-{new_unique()}.",
        "partitions": 3,
        "http_host": "127.0.0.1",
        "http_port": free_port(),
        "admin_host": "127.0.0.1",
        "admin_port": free_port(),
        "body_timeout_seconds": 1.0,
        "publish_timeout_seconds": 5.0,
        "readiness_interval_seconds": 0.5,
        "retry_after_seconds": 2,
    }
    values.update(overrides)
    return ProducerSettings(**values)


def svix_headers(
    body: str, *, msg_id: str | None = None, ts: int | None = None, secret: str = SECRET
) -> dict[str, str]:
    """Headers exactly as the sender makes them, with the svix library."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    when = datetime.fromtimestamp(ts, tz=UTC) if ts is not None else datetime.now(tz=UTC)
    return {
        "svix-id": msg_id,
        "svix-timestamp": str(int(when.timestamp())),
        "svix-signature": Webhook(secret).sign(msg_id, when, body),
    }


def byte_headers(body: bytes, *, msg_id: str | None = None, secret: str = SECRET) -> dict[str, str]:
    """Signature over arbitrary bytes (the library only signs str): same scheme, by hand."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = str(int(datetime.now(tz=UTC).timestamp()))
    mac = hmac.new(decode_secret(secret), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256)
    sig = "v1," + base64.b64encode(mac.digest()).decode()
    return {"svix-id": msg_id, "svix-timestamp": ts, "svix-signature": sig}


@dataclass
class RunningProducer:
    settings: ProducerSettings
    app: ProducerApp
    server: uvicorn.Server
    task: asyncio.Task[None] = field(repr=False)

    @property
    def port(self) -> int:
        return self.settings.http_port

    @property
    def url(self) -> str:
        """The public listener (the webhook)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """The admin listener (health, readiness, metrics, OpenAPI)."""
        return f"http://127.0.0.1:{self.settings.admin_port}"


@contextlib.asynccontextmanager
async def run_producer(settings: ProducerSettings) -> AsyncIterator[RunningProducer]:
    """The production server (both listeners, real Kafka publisher) in this event loop."""
    config = server_config(settings)
    config.timeout_graceful_shutdown = 5
    server = ProducerServer(config)
    task = asyncio.create_task(server.serve(sockets=public_apart(config, listeners(settings))))
    try:
        async with asyncio.timeout(TIMEOUT_S * 2):
            while not server.started:
                if task.done():
                    raise RuntimeError("the producer did not start") from task.exception()
                await asyncio.sleep(0.05)
        app = config.app
        assert isinstance(app, ProducerApp)
        yield RunningProducer(settings, app, server, task)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, TIMEOUT_S)


async def raw_http(
    port: int, request: bytes, *, pause_after: int | None = None, pause_s: float = 0.0
) -> RawResponse:
    """One request over a fresh connection, bytes exactly as given; the server's answer parsed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if pause_after is None:
            writer.write(request)
        else:
            writer.write(request[:pause_after])
            await writer.drain()
            await asyncio.sleep(pause_s)
            with contextlib.suppress(ConnectionError):
                writer.write(request[pause_after:])
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(TIMEOUT_S):
            return await read_response(reader)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def build_request(
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    method: str = "POST",
    path: str = "/webhooks/agntix",
    content_type: str | None = "application/json",
    chunked: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    if content_type is not None:
        lines.append(b"Content-Type: " + content_type.encode())
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}".encode())
    for name, value in extra or []:
        lines.append(name + b": " + value)
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
        payload = (
            b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in _parts(body)) + b"0\r\n\r\n"
        )
    else:
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def _parts(body: bytes, size: int = 64 * 1024) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)] or []


async def consume(
    settings: ProducerSettings, topic: str, count: int, *, timeout_s: float = TIMEOUT_S
) -> list[Any]:
    """The first `count` records of a topic (all partitions, from the start), within a deadline."""
    records: list[Any] = []
    async with reader(settings.kafka_bootstrap_servers, topic, committed=False) as consumer:
        try:
            async with asyncio.timeout(timeout_s):
                while len(records) < count:
                    batch = await consumer.getmany(timeout_ms=500)
                    for recs in batch.values():
                        records.extend(recs)
        except TimeoutError:
            pass
    return records


def session_body(event_type: str = "session.created", session_id: str | None = None) -> str:
    return json.dumps(
        {
            "id": session_id or str(uuid.uuid4()),
            "eventType": event_type,
            "type": "VOICE",
            "state": "OPEN" if event_type == "session.created" else "CLOSED",
            "createdAt": "2026-11-27T03:20:00.000Z",
            "metadata": {"customerPhoneNumber": "+14155550100", "sessionVariables": {"x": 1}},
        }
    )


def signed_headers(body: bytes) -> dict[str, str]:
    """Svix headers for any body: as text when it is UTF-8, else over the raw bytes."""
    try:
        return svix_headers(body.decode())
    except UnicodeDecodeError:
        return byte_headers(body)


@contextlib.asynccontextmanager
async def post_signed(
    http: aiohttp.ClientSession, url: str, body: bytes
) -> AsyncIterator[aiohttp.ClientResponse]:
    """POST a signed JSON body to the producer at `url`; the response while it is open."""
    async with http.post(
        f"{url}/webhooks/agntix",
        data=body,
        headers={**signed_headers(body), "content-type": "application/json"},
    ) as resp:
        yield resp


async def readyz_becomes(
    http: aiohttp.ClientSession, admin_url: str, status: int, *, within_s: float, poll_s: float
) -> None:
    """Poll the producer's /readyz until it answers `status`; TimeoutError after `within_s`."""
    async with asyncio.timeout(within_s):
        while True:
            async with http.get(f"{admin_url}/readyz") as resp:
                if resp.status == status:
                    return
            await asyncio.sleep(poll_s)


def valid_body() -> bytes:
    return session_body().encode()
