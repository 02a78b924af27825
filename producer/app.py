"""The producer's application: what each request is answered, on both of its listeners.

One app per process, one lifespan, one Kafka client. The admin listener (health, readiness,
metrics, OpenAPI) is raw ASGI under uvicorn. The public listener, the webhook and liveness only,
is `producer/http1.py` on the same event loop, started by the lifespan once Kafka is reachable;
it parses, and the methods under "The public listener's side" decide, count and log.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from producer.envelope import event_type_label, parse_envelope
from producer.errors import EnvelopeError, PublishUnavailable, RecordTooLarge, VerificationError
from producer.http1 import MAX_HEADER_BYTES, Answer, Headers, PublicListener, Reply
from producer.loop_lag import watch_loop_lag
from producer.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from producer.metrics import ProducerMetrics
from producer.openapi import ADMIN_PATHS, LIVENESS_PATH, WEBHOOK_PATH, render_openapi
from producer.publisher import Delivered, KafkaPublisher, Publisher
from producer.settings import ProducerSettings
from producer.tasks import Background
from producer.verify import WebhookVerifier, signature_header
from sessionflow.errors import SessionflowError
from sessionflow.heap import collect_young_less_often, freeze_startup_objects
from sessionflow.raw_record import RecordHeaders, dlq_headers, format_received_at, raw_headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Publish = Callable[[bytes | None, bytes, RecordHeaders, Delivered], None]

log = logging.getLogger("producer.requests")

_OK = b'{"status":"ok"}'
# Enough of the (unverified) id to correlate logs, never enough to flood them.
_MAX_LOGGED_ID = 128


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    return content_type.split(b";", 1)[0].strip().lower() == b"application/json"


class _Outcome:
    """An answer without the event stored: the status, the metrics outcome, the reason code."""

    __slots__ = ("close", "detail", "headers", "outcome", "reason", "status")

    def __init__(
        self,
        status: int,
        outcome: str,
        reason: str,
        detail: str = "",
        headers: Iterable[tuple[bytes, bytes]] = (),
        *,
        close: bool = False,
    ) -> None:
        self.status = status
        self.outcome = outcome
        self.reason = reason
        self.detail = detail
        self.headers = tuple(headers)
        self.close = close

    def answer(self) -> Answer:
        return Answer(self.status, _error(self.reason, self.detail), self.headers, self.close)


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
        self.public = PublicListener(
            self,
            request_timeout_s=settings.body_timeout_seconds,
            max_body=settings.max_body_bytes,
            shutdown_timeout_s=settings.shutdown_timeout_seconds,
        )
        self._public_socket: socket.socket | None = None
        self._loop_lag = Background(
            "loop-lag", lambda: watch_loop_lag(self.metrics.loop_lag.observe)
        )
        self._retry_after = (b"retry-after", str(settings.retry_after_seconds).encode())
        self._openapi = render_openapi(settings.max_body_bytes)

    def serve_public_on(self, sock: socket.socket) -> None:
        """The bound public socket: listened on once the lifespan has reached Kafka."""
        self._public_socket = sock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The admin listener and the lifespan; the public listener is `producer.http1`'s."""
        if scope["type"] == "http":
            await self._admin(scope["path"], scope["method"], send)
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
                if self._public_socket is not None:
                    await self.public.start(self._public_socket)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # In-flight webhooks end first: each still needs its Kafka acknowledgement.
                await self.public.close()
                await self._loop_lag.stop()
                await self.publisher.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _admin(self, path: str, method: str, send: Send) -> None:
        """The operators' listener: health, readiness, metrics and the OpenAPI document."""
        if path not in ADMIN_PATHS:
            await _respond(send, 404, _error("not_found", "unknown path"))
        elif method != "GET":
            answer = _not_allowed("GET")
            await _respond(send, answer.status, answer.body, answer.headers)
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

    # The public listener's side (producer/http1.py parses; these decide and count).

    def route(self, method: str, path: str, headers: Headers, started: float) -> Answer | None:
        """The answer a request gets before its body is read, or None: read it, then `webhook`."""
        if path == WEBHOOK_PATH:
            if method != "POST":
                self.metrics.count("unknown", "method_not_allowed")
                return _not_allowed("POST")
            return self._admit(headers, started)
        if path == LIVENESS_PATH:
            # Alive, nothing more: readiness and figures are the admin listener's business.
            return Answer(200, _OK) if method == "GET" else _not_allowed("GET")
        self.metrics.count("unknown", "not_found")
        return Answer(404, _error("not_found", "unknown path"))

    def _admit(self, headers: Headers, started: float) -> Answer | None:
        """415, 400 or 413 from the headers alone, else None: the body may come."""
        msg_id = signature_header(headers, b"id")
        if not _is_json(headers.get(b"content-type")):
            out = _Outcome(
                415, "unsupported_media_type", "unsupported_media_type", "send application/json"
            )
            return self._refuse(out, started, msg_id)
        declared = headers.get(b"content-length")
        if declared is None:
            return None
        try:
            length = int(declared)
        except ValueError:
            out = _Outcome(400, "bad_request", "bad_content_length", close=True)
            return self._refuse(out, started, msg_id)
        if length > self._max_body:
            self.metrics.body_bytes.observe(length)
            return self._refuse(self._too_large(), started, msg_id)
        return None

    def body_too_large(self, size: int, headers: Headers, started: float) -> Answer:
        """The body grew past the cap while it arrived: 413, and the connection closes."""
        self.metrics.body_bytes.observe(size)
        return self._refuse(self._too_large(), started, signature_header(headers, b"id"))

    def body_timeout(self, headers: Headers, started: float) -> Answer:
        """The request did not arrive whole in time: 408, and the connection closes."""
        out = _Outcome(
            408, "timeout", "body_timeout", "the request did not arrive whole in time", close=True
        )
        return self._refuse(out, started, signature_header(headers, b"id"))

    def client_left(self, headers: Headers, started: float) -> None:
        """The client went away before its request was whole: nobody to answer, nothing stored."""
        msg_id = signature_header(headers, b"id")
        self._finish(started, "unknown", "client_disconnected", 499, msg_id)

    def malformed(self, started: float, *, head_too_large: bool = False) -> Answer:
        """Bytes that are not an HTTP/1.1 request (400), or a head over the cap (431)."""
        if head_too_large:
            detail = f"at most {MAX_HEADER_BYTES} bytes of request line and headers"
            out = _Outcome(431, "too_large", "headers_too_large", detail, close=True)
        else:
            out = _Outcome(
                400, "bad_request", "malformed_http", "not an HTTP/1.1 request", close=True
            )
        return self._refuse(out, started, None)

    def failed(self, started: float) -> Answer:
        """A defect answered (500), counted; the listener has logged its traceback."""
        return self._refuse(
            _Outcome(500, "internal_error", "internal_error", close=True), started, None
        )

    def webhook(self, headers: Headers, body: bytes, started: float, reply: Reply) -> Answer | None:
        """A whole webhook request: verify, parse, hand to Kafka. The answer now when it is
        refused; else None, and `reply` gets it once Kafka has spoken."""
        received_at = format_received_at(time.time())
        msg_id = signature_header(headers, b"id")
        self.metrics.body_bytes.observe(len(body))
        try:
            msg_id = self._verifier.verify(
                body,
                msg_id,
                signature_header(headers, b"timestamp"),
                signature_header(headers, b"signature"),
            )
        except VerificationError as exc:
            return self._refuse(
                _Outcome(401, "unauthorized", exc.reason, exc.detail), started, msg_id
            )
        try:
            envelope = parse_envelope(body)
        except EnvelopeError as exc:
            pending = _Pending(self, reply, started, msg_id, "unknown", "dead_lettered", exc.reason)
            dlq = dlq_headers(msg_id, exc.reason, received_at)
            return pending.hand_over(self.publisher.publish_dlq, None, body, dlq)
        label = event_type_label(envelope.event_type)
        pending = _Pending(self, reply, started, msg_id, label, "accepted")
        raw = raw_headers(msg_id, envelope.event_type, received_at)
        return pending.hand_over(self.publisher.publish_raw, envelope.key, body, raw)

    def _unstored(self, exc: Exception) -> _Outcome:
        """What Kafka's refusal of a record answers: 503 (retry later) or 413 (never)."""
        if isinstance(exc, RecordTooLarge):
            return _Outcome(413, "too_large", exc.reason, exc.detail)
        if isinstance(exc, PublishUnavailable):
            return _Outcome(503, "unavailable", exc.reason, exc.detail, (self._retry_after,))
        raise exc

    def _too_large(self) -> _Outcome:
        detail = f"at most {self._max_body} bytes"
        return _Outcome(413, "too_large", "too_large", detail, close=True)

    def _refuse(
        self, out: _Outcome, started: float, msg_id: bytes | None, label: str = "unknown"
    ) -> Answer:
        """Count and log a request that ends without its event stored; its answer."""
        self._finish(started, label, out.outcome, out.status, msg_id, out.reason)
        return out.answer()

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


class _Pending:
    """A webhook handed to Kafka, waiting for the word that answers it."""

    __slots__ = ("app", "handed", "label", "msg_id", "outcome", "reason", "reply", "started")

    def __init__(
        self,
        app: ProducerApp,
        reply: Reply,
        started: float,
        msg_id: bytes,
        label: str,
        outcome: str,
        reason: str = "",
    ) -> None:
        self.app = app
        self.reply = reply
        self.started = started
        self.msg_id = msg_id
        self.label = label
        self.outcome = outcome
        self.reason = reason
        self.handed = 0.0

    def hand_over(
        self, publish: Publish, key: bytes | None, body: bytes, headers: RecordHeaders
    ) -> Answer | None:
        """None once Kafka has the record; the answer now when it cannot take it."""
        self.handed = time.perf_counter()
        try:
            publish(key, body, headers, self.delivered)
        except (PublishUnavailable, RecordTooLarge) as exc:
            return self._unstored(exc)
        return None

    def delivered(self, error: Exception | None) -> None:
        """Kafka's word (or our deadline's): 202 once stored, else 503 or 413."""
        app = self.app
        try:
            if error is None:
                app.metrics.publish_seconds.observe(time.perf_counter() - self.handed)
                app._finish(self.started, self.label, self.outcome, 202, self.msg_id, self.reason)
                answer = Answer(202, _status(self.outcome, self.msg_id, self.reason))
            else:
                answer = self._unstored(error)
        except Exception:  # a defect: the request is still answered, never left hanging
            log.exception("webhook failed")
            answer = app.failed(self.started)
        self.reply(answer)

    def _unstored(self, exc: Exception) -> Answer:
        """Kafka did not take the record: counted, logged, and its 503 or 413."""
        app = self.app
        return app._refuse(app._unstored(exc), self.started, self.msg_id, self.label)


def _error(reason: str, detail: str) -> bytes:
    return orjson.dumps({"error": reason, "detail": detail})


def _status(status: str, msg_id: bytes, reason: str = "") -> bytes:
    doc = {"status": status, "messageId": msg_id.decode("latin-1")}
    if reason:
        doc["reason"] = reason
    return orjson.dumps(doc)


def _not_allowed(allow: str) -> Answer:
    return Answer(405, _error("method_not_allowed", "use " + allow), ((b"allow", allow.encode()),))


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
    """The app; without a publisher it makes a KafkaPublisher, started by the lifespan."""
    return ProducerApp(settings, publisher)
