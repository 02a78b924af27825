"""The producer against the real broker: signed requests in, byte-exact records out, no 5xx."""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import orjson
import pytest

from sessionflow.topics import Topics
from tests.integration.producer_fixtures import (
    RunningProducer,
    build_request,
    consume,
    post_signed,
    raw_http,
    session_body,
    signed_headers,
    svix_headers,
    valid_body,
)

pytestmark = pytest.mark.integration


async def test_signed_events_land_byte_identical_in_the_raw_topic(
    producer: RunningProducer,
) -> None:
    sid = str(uuid.uuid4())
    bodies = [session_body("session.created", sid), session_body("session.ended", sid)]
    bodies.append(
        json.dumps(
            {"eventType": "message.added", "id": "msg_1", "sessionId": sid, "content": "héllo ✓"}
        )
    )
    sent: list[tuple[str, str]] = []
    async with aiohttp.ClientSession() as http:
        for i, body in enumerate(bodies):
            headers = svix_headers(body)
            if i == 1:  # the Standard Webhooks header family
                headers = {k.replace("svix-", "webhook-"): v for k, v in headers.items()}
            async with http.post(
                f"{producer.url}/webhooks/agntix",
                data=body.encode(),
                headers={**headers, "content-type": "application/json"},
            ) as resp:
                assert resp.status == 202, await resp.text()
                answer = await resp.json()
                assert answer["status"] == "accepted"
            sent.append((body, headers.get("svix-id") or headers["webhook-id"]))
    records = await consume(
        producer.settings, Topics.for_settings(producer.settings).raw, len(bodies)
    )
    assert len(records) == len(bodies)
    by_id = {dict(r.headers)["message-id"].decode(): r for r in records}
    for body, msg_id in sent:
        record = by_id[msg_id]
        assert record.value == body.encode()
        assert record.key == sid.encode()
        headers = dict(record.headers)
        assert headers["event-type"] == orjson.loads(body)["eventType"].encode()
        assert len(headers["received-at"]) == len("2026-11-27T03:20:00.123Z")
    # all three share the session's partition
    assert len({r.partition for r in records}) == 1


async def test_signed_but_unusable_goes_to_the_dlq(producer: RunningProducer) -> None:
    body = '{"eventType": "session.created"}'
    headers = svix_headers(body)
    resp = await raw_http(producer.port, build_request(body.encode(), headers))
    assert resp.status == 202
    assert orjson.loads(resp.body)["status"] == "dead_lettered"
    [record] = await consume(producer.settings, Topics.for_settings(producer.settings).dlq, 1)
    assert record.value == body.encode()
    assert dict(record.headers)["reason"] == b"no_key"
    assert dict(record.headers)["message-id"] == headers["svix-id"].encode()
    assert dict(record.headers)["stage"] == b"producer"


async def test_slow_body_is_408(producer: RunningProducer) -> None:
    body = valid_body()
    request = build_request(body, signed_headers(body))
    resp = await raw_http(producer.port, request, pause_after=len(request) - 10, pause_s=1.5)
    assert resp.status == 408


async def test_readiness_and_metrics(producer: RunningProducer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{producer.admin_url}/readyz") as resp:
            assert resp.status == 200
        async with http.get(f"{producer.admin_url}/healthz") as resp:
            assert resp.status == 200
        body = valid_body()
        async with post_signed(http, producer.url, body) as resp:
            assert resp.status == 202
        async with http.get(f"{producer.admin_url}/metrics") as resp:
            text = await resp.text()
        assert (
            'sessionflow_webhooks_total{event_type="session.created",outcome="accepted"} 1.0'
            in text
        )
        assert "sessionflow_kafka_publish_seconds_count 1.0" in text
        async with http.get(f"{producer.admin_url}/openapi.json") as resp:
            doc = await resp.json()
        assert "/webhooks/agntix" in doc["paths"]


ADMIN_PATHS = ("/metrics", "/healthz", "/readyz", "/openapi.json")


async def test_only_the_webhook_and_liveness_face_the_public_port(
    producer: RunningProducer,
) -> None:
    """Public: 404 for every admin path, whatever the method; admin: serves them, no webhook."""
    async with aiohttp.ClientSession() as http:
        for path in ADMIN_PATHS:
            for method in ("GET", "POST", "HEAD"):
                async with http.request(method, f"{producer.url}{path}") as resp:
                    assert resp.status == 404, (method, path)
                    assert b"sessionflow_" not in await resp.read()
            async with http.get(f"{producer.admin_url}{path}") as resp:
                assert resp.status == 200, path
        async with http.get(f"{producer.url}/livez") as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ok"}
        # A genuine, signed webhook is taken on the public port only.
        body = valid_body()
        headers = {**signed_headers(body), "content-type": "application/json"}
        async with http.post(
            f"{producer.admin_url}/webhooks/agntix", data=body, headers=headers
        ) as resp:
            assert resp.status == 404
        async with http.post(f"{producer.url}/webhooks/agntix", data=body, headers=headers) as resp:
            assert resp.status == 202
        async with http.get(f"{producer.admin_url}/livez") as resp:
            assert resp.status == 404
    # Raw bytes too: a path with a query string or an absolute-form target is still refused.
    for target in ("/metrics?x=1", "http://127.0.0.1/metrics", "//metrics"):
        raw = await raw_http(producer.port, build_request(b"", method="GET", path=target))
        assert raw.status == 404, target


async def test_concurrent_load_every_2xx_is_stored(producer: RunningProducer) -> None:
    bodies = [valid_body() for _ in range(200)]
    async with aiohttp.ClientSession() as http:

        async def post(body: bytes) -> int:
            async with post_signed(http, producer.url, body) as resp:
                return resp.status

        statuses = await asyncio.gather(*(post(b) for b in bodies))
    assert set(statuses) == {202}
    records = await consume(
        producer.settings, Topics.for_settings(producer.settings).raw, len(bodies)
    )
    assert sorted(r.value for r in records) == sorted(bodies)
