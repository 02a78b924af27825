"""The ASGI app driven directly, with an in-memory publisher in place of Kafka."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from svix.webhooks import Webhook

from producer.app import ProducerApp, create_app
from producer.errors import PublishUnavailable, RecordTooLarge
from producer.settings import ProducerSettings
from sessionflow.raw_record import RecordHeaders

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# Where a request arrived (ASGI scope["server"]): the settings' default ports.
ON_PUBLIC, ON_ADMIN = ("127.0.0.1", 8080), ("127.0.0.1", 8081)
BODY = b'{"eventType":"session.created","id":"7b0c5a4e-0000-4000-8000-000000000001","state":"OPEN"}'


class FakePublisher:
    def __init__(self) -> None:
        self.ready = True
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


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def app(publisher: FakePublisher) -> ProducerApp:
    settings = ProducerSettings(
        webhook_secrets=SECRET, max_body_bytes=4096, body_timeout_seconds=0.2
    )
    return create_app(settings, publisher)


async def test_accepts_and_publishes_the_exact_bytes(
    app: ProducerApp, publisher: FakePublisher
) -> None:
    resp = await call(app, "POST", "/webhooks/agntix", signed(), [BODY])
    assert resp.status == 202
    assert resp.json() == {"status": "accepted", "messageId": "msg_1"}
    [(key, body, headers)] = publisher.raw
    assert key == b"7b0c5a4e-0000-4000-8000-000000000001"
    assert body is BODY or body == BODY
    h = dict(headers)
    assert h["message-id"] == b"msg_1"
    assert h["event-type"] == b"session.created"
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", h["received-at"])


async def test_standard_webhooks_family_and_chunked_body(
    app: ProducerApp, publisher: FakePublisher
) -> None:
    resp = await call(
        app,
        "POST",
        "/webhooks/agntix",
        signed(family="webhook"),
        [BODY[:10], BODY[10:50], BODY[50:]],
    )
    assert resp.status == 202
    assert publisher.raw[0][1] == BODY


@pytest.mark.parametrize(
    "body",
    [
        b'{"eventType":"usage.updated","period":{"start":"a","end":"b"}}',
        b'{"eventType":"subscription.updated","status":"active","plan":"growth"}',
    ],
)
async def test_org_level_events_are_stored_raw_without_a_key_and_counted_as_their_type(
    app: ProducerApp, publisher: FakePublisher, body: bytes
) -> None:
    resp = await call(app, "POST", "/webhooks/agntix", signed(body), [body])
    assert resp.status == 202
    assert resp.json()["status"] == "accepted"
    assert publisher.raw[0][:2] == (None, body)
    assert publisher.dlq == []
    text = (await call(app, "GET", "/metrics", server=ON_ADMIN)).body.decode()
    event_type = orjson.loads(body)["eventType"]
    assert f'sessionflow_webhooks_total{{event_type="{event_type}",outcome="accepted"}} 1.0' in text


async def test_message_added_is_keyed_by_session(
    app: ProducerApp, publisher: FakePublisher
) -> None:
    body = b'{"eventType":"message.added","id":"msg_x","sessionId":"sess-9"}'
    resp = await call(app, "POST", "/webhooks/agntix", signed(body), [body])
    assert resp.status == 202
    assert publisher.raw[0][0] == b"sess-9"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not_json"),
        (b"[1]", "not_object"),
        (b'{"id":"s"}', "no_event_type"),
        (b'{"eventType":"session.ended"}', "no_key"),
    ],
)
async def test_signed_but_unusable_goes_to_the_dlq(
    app: ProducerApp, publisher: FakePublisher, body: bytes, reason: str
) -> None:
    resp = await call(app, "POST", "/webhooks/agntix", signed(body), [body])
    assert resp.status == 202
    assert resp.json() == {"status": "dead_lettered", "messageId": "msg_1", "reason": reason}
    assert publisher.raw == []
    [(key, stored, headers)] = publisher.dlq
    assert key is None
    assert stored == body
    assert dict(headers)["reason"] == reason.encode()
    assert dict(headers)["stage"] == b"producer"


async def test_bad_signature_is_401_with_reason(app: ProducerApp, publisher: FakePublisher) -> None:
    headers = signed()
    headers["svix-signature"] = "v1,AAAA"
    resp = await call(app, "POST", "/webhooks/agntix", headers, [BODY])
    assert resp.status == 401
    assert resp.json()["error"] == "no_matching_signature"
    resp = await call(app, "POST", "/webhooks/agntix", {"content-type": "application/json"}, [BODY])
    assert resp.json()["error"] == "missing_headers"
    assert publisher.raw == publisher.dlq == []


@pytest.mark.parametrize(
    "ctype", [None, "text/plain", "application/jsonx", "application/x-www-form-urlencoded", ""]
)
async def test_wrong_content_type_is_415(app: ProducerApp, ctype: str | None) -> None:
    headers = signed()
    if ctype is None:
        del headers["content-type"]
    else:
        headers["content-type"] = ctype
    resp = await call(app, "POST", "/webhooks/agntix", headers, [BODY])
    assert resp.status == 415


async def test_json_with_parameters_is_fine(app: ProducerApp) -> None:
    headers = {**signed(), "content-type": "Application/JSON ; charset=utf-8"}
    assert (await call(app, "POST", "/webhooks/agntix", headers, [BODY])).status == 202


async def test_too_large_declared_and_streamed(app: ProducerApp, publisher: FakePublisher) -> None:
    headers = {**signed(), "content-length": "5000"}
    resp = await call(app, "POST", "/webhooks/agntix", headers, [b"x" * 5000])
    assert resp.status == 413
    assert resp.headers["connection"] == "close"
    resp = await call(app, "POST", "/webhooks/agntix", signed(), [b"x" * 3000, b"x" * 3000, b"x"])
    assert resp.status == 413
    assert publisher.raw == []


async def test_exactly_the_cap_is_read(app: ProducerApp, publisher: FakePublisher) -> None:
    body = b'{"eventType":"session.created","id":"s","pad":"' + b"p" * (4096 - 49) + b'"}'
    assert len(body) == 4096
    assert (await call(app, "POST", "/webhooks/agntix", signed(body), [body])).status == 202


async def test_bad_content_length_is_400(app: ProducerApp) -> None:
    headers = {**signed(), "content-length": "12x"}
    assert (await call(app, "POST", "/webhooks/agntix", headers, [BODY])).status == 400


async def test_slow_body_is_408(app: ProducerApp, publisher: FakePublisher) -> None:
    resp = await call(app, "POST", "/webhooks/agntix", signed(), [BODY[:5], BODY[5:]], delay=0.15)
    assert resp.status == 408
    assert resp.json()["error"] == "body_timeout"
    assert publisher.raw == []


async def test_client_disconnect_gets_no_answer(app: ProducerApp, publisher: FakePublisher) -> None:
    resp = await call(app, "POST", "/webhooks/agntix", signed(), [BODY], disconnect=True)
    assert resp.messages == []
    assert publisher.raw == []


@pytest.mark.parametrize(
    "error", [PublishUnavailable("publish_timeout"), PublishUnavailable("kafka_unavailable")]
)
async def test_kafka_trouble_is_503_with_retry_after(
    app: ProducerApp, publisher: FakePublisher, error: Exception
) -> None:
    publisher.error = error
    resp = await call(app, "POST", "/webhooks/agntix", signed(), [BODY])
    assert resp.status == 503
    assert resp.headers["retry-after"] == "5"
    resp = await call(app, "POST", "/webhooks/agntix", signed(b"nope"), [b"nope"])
    assert resp.status == 503


async def test_record_too_large_for_kafka_is_413(
    app: ProducerApp, publisher: FakePublisher
) -> None:
    publisher.error = RecordTooLarge("record_too_large")
    assert (await call(app, "POST", "/webhooks/agntix", signed(), [BODY])).status == 413


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
async def test_wrong_method_is_405(app: ProducerApp, method: str) -> None:
    resp = await call(app, method, "/webhooks/agntix", signed(), [BODY])
    assert resp.status == 405
    assert resp.headers["allow"] == "POST"


async def test_unknown_paths_and_get_endpoints(app: ProducerApp, publisher: FakePublisher) -> None:
    assert (await call(app, "POST", "/webhooks/agntix/", signed(), [BODY])).status == 404
    assert (await call(app, "GET", "/", {})).status == 404
    assert (await call(app, "POST", "/healthz", {}, server=ON_ADMIN)).status == 405
    assert (await call(app, "GET", "/healthz", server=ON_ADMIN)).json() == {"status": "ok"}
    assert (await call(app, "GET", "/readyz", server=ON_ADMIN)).status == 200
    publisher.ready = False
    resp = await call(app, "GET", "/readyz", server=ON_ADMIN)
    assert resp.status == 503
    assert "retry-after" in resp.headers
    doc = (await call(app, "GET", "/openapi.json", server=ON_ADMIN)).json()
    assert doc["openapi"].startswith("3.")
    assert "/webhooks/agntix" in doc["paths"]


ADMIN_PATHS = ("/metrics", "/healthz", "/readyz", "/openapi.json")


@pytest.mark.parametrize("path", ADMIN_PATHS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT"])
async def test_the_public_port_hides_every_admin_path(
    app: ProducerApp, path: str, method: str
) -> None:
    resp = await call(app, method, path, signed(), [BODY])
    assert resp.status == 404
    assert resp.json() == {"error": "not_found", "detail": "unknown path"}


@pytest.mark.parametrize(
    "server", [None, ("127.0.0.1", 9999), ("10.0.0.1", 8080), ("/run/producer.sock", None)]
)
async def test_a_request_not_provably_on_the_admin_port_is_public(
    app: ProducerApp, server: tuple[str, int | None] | None
) -> None:
    assert (await call(app, "GET", "/metrics", server=server)).status == 404


async def test_the_public_port_has_a_bare_liveness_path(
    app: ProducerApp, publisher: FakePublisher
) -> None:
    publisher.ready = False  # alive is not ready: the load balancer sees the process, no more
    resp = await call(app, "GET", "/livez")
    assert (resp.status, resp.json()) == (200, {"status": "ok"})
    resp = await call(app, "POST", "/livez")
    assert (resp.status, resp.headers["allow"]) == (405, "GET")


async def test_the_admin_port_serves_no_webhook_and_counts_no_404(app: ProducerApp) -> None:
    assert (
        await call(app, "POST", "/webhooks/agntix", signed(), [BODY], server=ON_ADMIN)
    ).status == 404
    assert (await call(app, "GET", "/livez", server=ON_ADMIN)).status == 404
    text = (await call(app, "GET", "/metrics", server=ON_ADMIN)).body.decode()
    assert 'sessionflow_webhooks_total{event_type="unknown",outcome="not_found"} 0.0' in text
    assert "sessionflow_webhook_request_seconds_count 0.0" in text


async def test_metrics(app: ProducerApp) -> None:
    await call(app, "POST", "/webhooks/agntix", signed(), [BODY])
    await call(app, "POST", "/webhooks/agntix", {"content-type": "application/json"}, [BODY])
    await call(app, "POST", "/webhooks/agntix", {"content-type": "text/plain"}, [BODY])
    body = b'{"eventType":"who.knows","id":"x"}'
    await call(app, "POST", "/webhooks/agntix", signed(body), [body])
    resp = await call(app, "GET", "/metrics", server=ON_ADMIN)
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.body.decode()
    assert 'sessionflow_webhooks_total{event_type="session.created",outcome="accepted"} 1.0' in text
    assert 'sessionflow_webhooks_total{event_type="unknown",outcome="unauthorized"} 1.0' in text
    assert (
        'sessionflow_webhooks_total{event_type="unknown",outcome="unsupported_media_type"} 1.0'
        in text
    )
    assert 'sessionflow_webhooks_total{event_type="other",outcome="accepted"} 1.0' in text
    assert "sessionflow_webhook_request_seconds_count 4.0" in text
    assert "sessionflow_kafka_publish_seconds_count 2.0" in text
    assert "sessionflow_webhook_body_bytes_count 3.0" in text


async def test_one_log_line_per_request_without_secrets(
    app: ProducerApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="producer.requests")
    body = b'{"eventType":"session.created","id":"s","metadata":{"customerPhoneNumber":"+14155550100"}}'
    headers = signed(body)
    await call(app, "POST", "/webhooks/agntix", headers, [body])
    await call(app, "POST", "/webhooks/agntix", {**headers, "svix-signature": "v1,AAAA"}, [body])
    records = [r for r in caplog.records if r.name == "producer.requests"]
    assert len(records) == 2
    fields = [r.fields for r in records]  # type: ignore[attr-defined]
    assert fields[0]["outcome"] == "accepted"
    assert fields[0]["status"] == 202
    assert fields[0]["message_id"] == "msg_1"
    assert fields[0]["event_type"] == "session.created"
    assert isinstance(fields[0]["latency_ms"], float)
    assert fields[1]["reason"] == "no_matching_signature"
    dumped = orjson.dumps(fields).decode()
    for secret_part in (
        "+14155550100",
        headers["svix-signature"].split(",")[1],
        SECRET[6:],
        "customerPhone",
    ):
        assert secret_part not in dumped


async def test_lifespan_starts_and_stops_the_publisher(
    app: ProducerApp, publisher: FakePublisher
) -> None:
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert publisher.started
    assert publisher.stopped


async def test_lifespan_reports_a_failed_start(app: ProducerApp, publisher: FakePublisher) -> None:
    publisher.error = OSError("broker down")
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app({"type": "lifespan"}, receive, send)
    assert sent[0]["type"] == "lifespan.startup.failed"
