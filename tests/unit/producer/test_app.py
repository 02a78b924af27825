"""The webhook endpoint driven directly, with an in-memory publisher in place of Kafka."""

from __future__ import annotations

import re

import orjson
import pytest

from producer.app import ProducerApp
from producer.errors import PublishUnavailable, RecordTooLarge
from tests.unit.producer.asgi import (
    BODY,
    ON_ADMIN,
    FakePublisher,
    call,
    metrics_once,
    signed,
)


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
    resp = await call(app, "POST", "/webhooks/agntix", signed(), [BODY[:5], BODY[5:]], delay=0.5)
    assert resp.status == 408
    assert resp.json()["error"] == "body_timeout"
    assert publisher.raw == []


async def test_client_disconnect_gets_no_answer(app: ProducerApp, publisher: FakePublisher) -> None:
    resp = await call(app, "POST", "/webhooks/agntix", signed(), [BODY], disconnect=True)
    assert resp.status is None
    # Timed, not counted: no outcome was given to anybody.
    text = await metrics_once(app, "sessionflow_webhook_request_seconds_count 1.0")
    counted = re.findall(r"^sessionflow_webhooks_total\{.*\} (\S+)$", text, re.M)
    assert counted
    assert {float(value) for value in counted} == {0.0}
    assert publisher.raw == []


def refuse(publisher: FakePublisher, error: Exception, when: str) -> None:
    """Kafka refuses the record when it is handed over, or later in its delivery report."""
    if when == "handed_over":
        publisher.error = error
    else:
        publisher.failure = error


@pytest.mark.parametrize("when", ["handed_over", "reported"])
@pytest.mark.parametrize(
    "error", [PublishUnavailable("publish_timeout"), PublishUnavailable("kafka_unavailable")]
)
async def test_kafka_trouble_is_503_with_retry_after(
    app: ProducerApp, publisher: FakePublisher, error: PublishUnavailable, when: str
) -> None:
    refuse(publisher, error, when)
    resp = await call(app, "POST", "/webhooks/agntix", signed(), [BODY])
    assert resp.status == 503
    assert resp.headers["retry-after"] == "5"
    assert resp.json()["error"] == error.reason
    resp = await call(app, "POST", "/webhooks/agntix", signed(b"nope"), [b"nope"])
    assert resp.status == 503
    assert publisher.raw == publisher.dlq == []
    text = app.metrics.render().decode()
    assert 'outcome="unavailable"} 1.0' in text
    assert 'sessionflow_webhooks_total{event_type="unknown",outcome="unavailable"} 1.0' in text


@pytest.mark.parametrize("when", ["handed_over", "reported"])
async def test_record_too_large_for_kafka_is_413(
    app: ProducerApp, publisher: FakePublisher, when: str
) -> None:
    refuse(publisher, RecordTooLarge("record_too_large"), when)
    resp = await call(app, "POST", "/webhooks/agntix", signed(), [BODY])
    assert resp.status == 413
    assert resp.json()["error"] == "record_too_large"


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
