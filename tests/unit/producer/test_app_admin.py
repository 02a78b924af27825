"""The two ports, metrics, request logs and the lifespan, driven directly."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson
import pytest

from producer.app import ProducerApp
from sessionflow.heap import YOUNG_THRESHOLD
from tests.unit.producer.asgi import (
    BODY,
    ON_ADMIN,
    SECRET,
    FakePublisher,
    call,
    signed,
)

ADMIN_PATHS = ("/metrics", "/healthz", "/readyz", "/openapi.json")


@pytest.mark.parametrize("path", ADMIN_PATHS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT"])
async def test_the_public_port_hides_every_admin_path(
    app: ProducerApp, path: str, method: str
) -> None:
    resp = await call(app, method, path, signed(), [BODY])
    assert resp.status == 404
    if method == "HEAD":  # the headers of the answer, no body
        assert resp.body == b""
        assert int(resp.headers["content-length"]) > 0
    else:
        assert resp.json() == {"error": "not_found", "detail": "unknown path"}


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


@pytest.fixture
def collector_restored() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)
    gc.unfreeze()


@pytest.mark.usefixtures("collector_restored")
async def test_lifespan_starts_and_stops_the_publisher(
    app: ProducerApp, publisher: FakePublisher
) -> None:
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        message = inbox.pop(0)
        if message["type"] == "lifespan.shutdown":
            await asyncio.sleep(0.35)  # the app runs: its loop-lag timer wakes every 0.1 s
        return message

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert publisher.started
    assert publisher.stopped
    lag_count = re.search(
        rb"^sessionflow_producer_event_loop_lag_seconds_count (\S+)$", app.metrics.render(), re.M
    )
    assert lag_count is not None
    assert float(lag_count.group(1)) >= 2
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "loop-lag"]
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # requests in flight are not garbage
    assert gc.get_freeze_count() > 0


async def test_lifespan_reports_a_failed_start(app: ProducerApp, publisher: FakePublisher) -> None:
    publisher.error = OSError("broker down")
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await app({"type": "lifespan"}, receive, send)
    assert sent[0]["type"] == "lifespan.startup.failed"
