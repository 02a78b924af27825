"""The producer's raw ASGI application: the public webhook listener and the admin listener.

One app serves both sockets of one server (one lifespan, one Kafka client); a request's
listener is the local port it arrived on (ASGI `scope["server"]`), which a client cannot forge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, cast

import orjson

from producer.deadlines import Deadlines
from producer.envelope import event_type_label, parse_envelope
from producer.errors import EnvelopeError, PublishUnavailable, RecordTooLarge, VerificationError
from producer.loop_lag import watch_loop_lag
from producer.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from producer.metrics import ProducerMetrics
from producer.openapi import ADMIN_PATHS, LIVENESS_PATH, WEBHOOK_PATH, render_openapi
from producer.publisher import KafkaPublisher, Publisher
from producer.settings import ProducerSettings
from producer.tasks import Background
from producer.verify import WebhookVerifier, signature_header
from sessionflow.errors import SessionflowError
from sessionflow.heap import collect_young_less_often, freeze_startup_objects
from sessionflow.raw_record import dlq_headers, format_received_at, raw_headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("producer.requests")

_CLOSE = (b"connection", b"close")
_OK = b'{"status":"ok"}'
# Enough of the (unverified) id to correlate logs, never enough to flood them.
_MAX_LOGGED_ID = 128


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    return content_type.split(b";", 1)[0].strip().lower() == b"application/json"


class _Outcome(Exception):
    """An early answer: the status, the reason code and the metrics outcome."""

    def __init__(
        self,
        status: int,
        outcome: str,
        reason: str,
        detail: str = "",
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome
        self.reason = reason
        self.detail = detail
        self.headers = tuple(headers)


class ProducerApp:
    """POST /webhooks/agntix: content type, capped body, signature, envelope, publish, answer."""

    def __init__(
        self,
        settings: ProducerSettings,
        publisher: Publisher | None = None,
        metrics: ProducerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.publisher: Publisher = publisher if publisher is not None else KafkaPublisher(settings)
        self.metrics = metrics if metrics is not None else ProducerMetrics()
        self.metrics.track_readiness(lambda: self.publisher.ready)
        self.metrics.clients_replaced.track(lambda: self.publisher.clients_replaced)
        self._verifier = WebhookVerifier(
            settings.webhook_keys(), tolerance_seconds=settings.timestamp_tolerance_seconds
        )
        self._max_body = settings.max_body_bytes
        # One sweeper for every request's body deadline: a timer each costs more than the rest
        # of the handler's bookkeeping (bench/results/producer-experiments.md).
        self._body_deadlines = Deadlines(settings.body_timeout_seconds)
        self._loop_lag = Background(
            "loop-lag", lambda: watch_loop_lag(self.metrics.loop_lag.observe)
        )
        self._retry_after = (b"retry-after", str(settings.retry_after_seconds).encode())
        self._openapi = render_openapi(settings.max_body_bytes)
        self._admin_port = settings.admin_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Routed here, not in helpers: each coroutine layer costs the hot path a little.
            server = scope.get("server")
            # Anything not provably on the admin listener is public (a unix socket has no port).
            if server is not None and server[1] == self._admin_port:
                await self._admin(scope["path"], scope["method"], send)
            elif scope["path"] == WEBHOOK_PATH and scope["method"] == "POST":
                await self._webhook(scope, receive, send)
            else:
                await self._public(scope["path"], scope["method"], send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.publisher.start()
                except Exception as exc:  # any failure must reach the server, which then exits
                    if isinstance(exc, SessionflowError):  # a refusal that says why: no traceback
                        logging.getLogger("producer").error("refusing to start: %s", exc)
                    else:
                        logging.getLogger("producer").exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                freeze_startup_objects()  # full collections skip what lives as long as we do
                collect_young_less_often()  # requests in flight are not garbage
                self._loop_lag.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._loop_lag.stop()
                await self._body_deadlines.stop()
                await self.publisher.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _public(self, path: str, method: str, send: Send) -> None:
        """The internet-facing listener, besides POST on the webhook: liveness, else 405/404."""
        if path == WEBHOOK_PATH:
            self.metrics.count("unknown", "method_not_allowed")
            await _not_allowed(send, b"POST")
        elif path == LIVENESS_PATH:
            # Alive, nothing more: readiness and figures are the admin listener's business.
            await (_respond(send, 200, _OK) if method == "GET" else _not_allowed(send, b"GET"))
        else:
            self.metrics.count("unknown", "not_found")
            await _respond(send, 404, _error("not_found", "unknown path"))

    async def _admin(self, path: str, method: str, send: Send) -> None:
        """The operators' listener: health, readiness, metrics and the OpenAPI document."""
        if path not in ADMIN_PATHS:
            await _respond(send, 404, _error("not_found", "unknown path"))
        elif method != "GET":
            await _not_allowed(send, b"GET")
        elif path == "/healthz":
            await _respond(send, 200, _OK)
        elif path == "/readyz":
            if self.publisher.ready:
                await _respond(send, 200, b'{"status":"ready"}')
            else:
                await _respond(
                    send, 503, b'{"status":"unavailable","detail":"kafka"}', (self._retry_after,)
                )
        elif path == "/metrics":
            await _respond(
                send, 200, self.metrics.render(), content_type=METRICS_CONTENT_TYPE.encode()
            )
        else:
            await _respond(send, 200, self._openapi)

    async def _webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        received_at = format_received_at(time.time())
        headers: dict[bytes, bytes] = dict(scope["headers"])
        label = "unknown"
        msg_id = signature_header(headers, b"id")
        try:
            body = await self._read_body(headers, receive)
            if body is None:
                # The client left: nobody to answer, and nothing was stored.
                self._finish(started, label, "client_disconnected", 499, msg_id)
                return
            try:
                msg_id = self._verifier.verify(
                    body,
                    msg_id,
                    signature_header(headers, b"timestamp"),
                    signature_header(headers, b"signature"),
                )
            except VerificationError as exc:
                raise _Outcome(401, "unauthorized", exc.reason, exc.detail) from exc
            try:
                envelope = parse_envelope(body)
            except EnvelopeError as exc:
                dlq = dlq_headers(msg_id, exc.reason, received_at)
                await self._publish(self.publisher.publish_dlq(None, body, dlq))
                await _respond(send, 202, _status("dead_lettered", msg_id, exc.reason))
                self._finish(started, label, "dead_lettered", 202, msg_id, exc.reason)
                return
            label = event_type_label(envelope.event_type)
            raw = raw_headers(msg_id, envelope.event_type, received_at)
            await self._publish(self.publisher.publish_raw(envelope.key, body, raw))
            await _respond(send, 202, _status("accepted", msg_id))
            self._finish(started, label, "accepted", 202, msg_id)
        except _Outcome as out:
            await _respond(send, out.status, _error(out.reason, out.detail), out.headers)
            self._finish(started, label, out.outcome, out.status, msg_id, out.reason)

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes | None:
        """The whole body, or None if the client disconnected; _Outcome for 415/413/408/400."""
        if not _is_json(headers.get(b"content-type")):
            raise _Outcome(
                415, "unsupported_media_type", "unsupported_media_type", "send application/json"
            )
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError as exc:
                raise _Outcome(400, "bad_request", "bad_content_length", "", (_CLOSE,)) from exc
            if length > self._max_body:
                self.metrics.body_bytes.observe(length)
                raise _Outcome(
                    413, "too_large", "too_large", f"at most {self._max_body} bytes", (_CLOSE,)
                )
        chunks: list[bytes] = []
        size = 0
        # A request always runs in a task.
        task = cast("asyncio.Task[None]", asyncio.current_task())
        deadline = self._body_deadlines.arm(task.cancel)
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return None
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > self._max_body:
                    self.metrics.body_bytes.observe(size)
                    raise _Outcome(
                        413, "too_large", "too_large", f"at most {self._max_body} bytes", (_CLOSE,)
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if not deadline.expired:
                raise
            # Our deadline, not a shutdown: take the cancellation back and answer.
            task.uncancel()
            raise _Outcome(
                408, "timeout", "body_timeout", "the body did not arrive in time", (_CLOSE,)
            ) from None
        finally:
            deadline.disarm()
        self.metrics.body_bytes.observe(size)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _publish(self, write: Awaitable[None]) -> None:
        """Await one Kafka write; what Kafka cannot take becomes the answer (503 or 413)."""
        started = time.perf_counter()
        try:
            await write
        except PublishUnavailable as exc:
            raise _Outcome(
                503, "unavailable", exc.reason, exc.detail, (self._retry_after,)
            ) from exc
        except RecordTooLarge as exc:
            raise _Outcome(413, "too_large", exc.reason, exc.detail) from exc
        self.metrics.publish_seconds.observe(time.perf_counter() - started)

    def _finish(
        self,
        started: float,
        label: str,
        outcome: str,
        status: int,
        msg_id: bytes | None,
        reason: str = "",
    ) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.request_seconds.observe(elapsed)
        if outcome != "client_disconnected":
            self.metrics.count(label, outcome)
        if log.isEnabledFor(logging.INFO):
            fields: dict[str, object] = {
                "message_id": msg_id[:_MAX_LOGGED_ID].decode("latin-1") if msg_id else None,
                "event_type": label,
                "outcome": outcome,
                "status": status,
                "latency_ms": round(elapsed * 1000, 3),
            }
            if reason:
                fields["reason"] = reason
            log.info("webhook", extra={"fields": fields})


def _error(reason: str, detail: str) -> bytes:
    return orjson.dumps({"error": reason, "detail": detail})


def _status(status: str, msg_id: bytes, reason: str = "") -> bytes:
    doc = {"status": status, "messageId": msg_id.decode("latin-1")}
    if reason:
        doc["reason"] = reason
    return orjson.dumps(doc)


async def _not_allowed(send: Send, allow: bytes) -> None:
    detail = "use " + allow.decode()
    await _respond(send, 405, _error("method_not_allowed", detail), ((b"allow", allow),))


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    content_type: bytes = b"application/json",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", b"%d" % len(body)),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(settings: ProducerSettings, publisher: Publisher | None = None) -> ProducerApp:
    """The ASGI app; without a publisher it makes a KafkaPublisher, started by the lifespan."""
    return ProducerApp(settings, publisher)
