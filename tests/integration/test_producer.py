"""The producer against the real broker: signed requests in, byte-exact records out, no 5xx."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka.partitioner import murmur2

from producer.settings import ProducerSettings
from sessionflow.topics import Topics
from tests.integration.producer_fixtures import (
    SECRET,
    TIMEOUT_S,
    RunningProducer,
    build_request,
    byte_headers,
    consume,
    make_settings,
    raw_http,
    run_producer,
    svix_headers,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture
async def producer() -> AsyncIterator[RunningProducer]:
    async with run_producer(make_settings()) as running:
        yield running


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


def _signed(body: bytes) -> dict[str, str]:
    try:
        return svix_headers(body.decode())
    except UnicodeDecodeError:
        return byte_headers(body)


def _valid() -> bytes:
    return session_body().encode()


MIB = 1024 * 1024
# (name, request factory, expected status, where a 2xx must land: "raw" | "dlq" | None)
HOSTILE: list[tuple[str, Callable[[], bytes], int, str | None]] = [
    (
        "deep nesting arrays",
        lambda: (b := b"[" * 100_000 + b"]" * 100_000, build_request(b, _signed(b)))[1],
        202,
        "dlq",
    ),
    (
        "deep nesting objects",
        lambda: (b := b'{"a":' * 5000 + b"1" + b"}" * 5000, build_request(b, _signed(b)))[1],
        202,
        "dlq",
    ),
    (
        "5000-digit integer",
        lambda: (
            b := b'{"eventType":"session.created","id":"s1","n":' + b"7" * 5000 + b"}",
            build_request(b, _signed(b)),
        )[1],
        202,
        "dlq",
    ),
    (
        "NaN",
        lambda: (
            b := b'{"eventType":"session.created","id":"s1","n":NaN}',
            build_request(b, _signed(b)),
        )[1],
        202,
        "dlq",
    ),
    (
        "Infinity",
        lambda: (
            b := b'{"eventType":"session.created","id":"s1","n":-Infinity}',
            build_request(b, _signed(b)),
        )[1],
        202,
        "dlq",
    ),
    (
        "duplicate keys",
        lambda: (
            b := b'{"eventType":"session.created","id":"a","id":"b"}',
            build_request(b, _signed(b)),
        )[1],
        202,
        "raw",
    ),
    (
        "lone surrogate escape",
        lambda: (
            b := b'{"eventType":"session.created","id":"\\udc00"}',
            build_request(b, _signed(b)),
        )[1],
        202,
        "dlq",
    ),
    (
        "non-UTF-8 bytes",
        lambda: (
            b := b'{"eventType":"session.created","id":"\xc3\x28"}',
            build_request(b, _signed(b)),
        )[1],
        202,
        "dlq",
    ),
    ("empty body", lambda: build_request(b"", _signed(b"")), 202, "dlq"),
    ("whitespace body", lambda: build_request(b" \n ", _signed(b" \n ")), 202, "dlq"),
    ("top-level array", lambda: build_request(b"[1,2]", _signed(b"[1,2]")), 202, "dlq"),
    ("top-level null", lambda: build_request(b"null", _signed(b"null")), 202, "dlq"),
    (
        "eventType not a string",
        lambda: (b := b'{"eventType":1,"id":"x"}', build_request(b, _signed(b)))[1],
        202,
        "dlq",
    ),
    (
        "message.added without sessionId",
        lambda: (b := b'{"eventType":"message.added","id":"m"}', build_request(b, _signed(b)))[1],
        202,
        "dlq",
    ),
    ("2 MiB body", lambda: build_request(b"x" * (2 * MIB), _signed(b"x")), 413, None),
    (
        "2 MiB chunked body",
        lambda: build_request(b"x" * (2 * MIB), _signed(b"x"), chunked=True),
        413,
        None,
    ),
    (
        "chunked without content-length",
        lambda: (b := _valid(), build_request(b, _signed(b), chunked=True))[1],
        202,
        "raw",
    ),
    (
        "20 KB extra header",
        lambda: (
            b := _valid(),
            build_request(b, _signed(b), extra=[(b"X-Padding", b"p" * 20_000)]),
        )[1],
        202,
        "raw",
    ),
    (
        "20 KB signature header",
        lambda: (
            b := _valid(),
            build_request(b, {**_signed(b), "svix-signature": "v1," + "A" * 20_000}),
        )[1],
        401,
        None,
    ),
    (
        "text/plain",
        lambda: (b := _valid(), build_request(b, _signed(b), content_type="text/plain"))[1],
        415,
        None,
    ),
    (
        "no content type",
        lambda: (b := _valid(), build_request(b, _signed(b), content_type=None))[1],
        415,
        None,
    ),
    (
        "multipart",
        lambda: (
            b := _valid(),
            build_request(b, _signed(b), content_type="multipart/form-data; boundary=x"),
        )[1],
        415,
        None,
    ),
    ("unsigned", lambda: build_request(_valid()), 401, None),
    (
        "wrong secret",
        lambda: (
            b := _valid(),
            build_request(
                b, svix_headers(b.decode(), secret="whsec_" + base64.b64encode(b"w" * 24).decode())
            ),
        )[1],
        401,
        None,
    ),
    (
        "stale timestamp",
        lambda: (
            b := _valid(),
            build_request(b, svix_headers(b.decode(), ts=int(time.time()) - 400)),
        )[1],
        401,
        None,
    ),
    (
        "future timestamp",
        lambda: (
            b := _valid(),
            build_request(b, svix_headers(b.decode(), ts=int(time.time()) + 400)),
        )[1],
        401,
        None,
    ),
    (
        "timestamp not a number",
        lambda: (b := _valid(), build_request(b, {**_signed(b), "svix-timestamp": "yesterday"}))[1],
        401,
        None,
    ),
    (
        "signature without comma",
        lambda: (b := _valid(), build_request(b, {**_signed(b), "svix-signature": "v1abc"}))[1],
        401,
        None,
    ),
    (
        "signature bad base64",
        lambda: (b := _valid(), build_request(b, {**_signed(b), "svix-signature": "v1,abc"}))[1],
        401,
        None,
    ),
    (
        "non-ASCII bytes in timestamp",
        lambda: (
            b := _valid(),
            build_request(
                b,
                {k: v for k, v in _signed(b).items() if k != "svix-timestamp"},
                extra=[(b"svix-timestamp", b"\xff\xfe")],
            ),
        )[1],
        401,
        None,
    ),
    (
        "body tampered after signing",
        lambda: (b := _valid(), build_request(b + b" ", _signed(b)))[1],
        401,
        None,
    ),
    ("GET on the endpoint", lambda: build_request(b"", method="GET"), 405, None),
    (
        "PUT on the endpoint",
        lambda: (b := _valid(), build_request(b, _signed(b), method="PUT"))[1],
        405,
        None,
    ),
    (
        "unknown path",
        lambda: (b := _valid(), build_request(b, _signed(b), path="/webhooks/other"))[1],
        404,
        None,
    ),
    ("10 KB path", lambda: build_request(b"{}", path="/" + "a" * 10_000), 404, None),
    (
        "invalid content-length",
        lambda: (
            b"POST /webhooks/agntix HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}"
        ),
        400,
        None,
    ),
]


async def test_hostile_inputs_never_get_a_5xx(producer: RunningProducer) -> None:
    assert len(HOSTILE) >= 25
    failures = []
    expected_raw = expected_dlq = 0
    for name, make, status, where in HOSTILE:
        try:
            resp = await raw_http(producer.port, make())
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            failures.append(f"{name}: no answer ({exc!r})")
            continue
        if resp.status != status or resp.status >= 500:
            failures.append(f"{name}: {resp.status} {resp.body[:200]!r}, expected {status}")
        expected_raw += where == "raw"
        expected_dlq += where == "dlq"
    assert not failures, "\n".join(failures)
    topics = Topics.for_settings(producer.settings)
    assert (
        len(await consume(producer.settings, topics.raw, expected_raw + 1, timeout_s=3))
        == expected_raw
    )
    assert (
        len(await consume(producer.settings, topics.dlq, expected_dlq + 1, timeout_s=3))
        == expected_dlq
    )


async def test_slow_body_is_408(producer: RunningProducer) -> None:
    body = _valid()
    request = build_request(body, _signed(body))
    resp = await raw_http(producer.port, request, pause_after=len(request) - 10, pause_s=1.5)
    assert resp.status == 408


async def test_readiness_and_metrics(producer: RunningProducer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{producer.admin_url}/readyz") as resp:
            assert resp.status == 200
        async with http.get(f"{producer.admin_url}/healthz") as resp:
            assert resp.status == 200
        body = _valid()
        async with http.post(
            f"{producer.url}/webhooks/agntix",
            data=body,
            headers={**_signed(body), "content-type": "application/json"},
        ) as resp:
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
        body = _valid()
        headers = {**_signed(body), "content-type": "application/json"}
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
    bodies = [_valid() for _ in range(200)]
    async with aiohttp.ClientSession() as http:

        async def post(body: bytes) -> int:
            async with http.post(
                f"{producer.url}/webhooks/agntix",
                data=body,
                headers={**_signed(body), "content-type": "application/json"},
            ) as resp:
                return resp.status

        statuses = await asyncio.gather(*(post(b) for b in bodies))
    assert set(statuses) == {202}
    records = await consume(
        producer.settings, Topics.for_settings(producer.settings).raw, len(bodies)
    )
    assert sorted(r.value for r in records) == sorted(bodies)


async def test_graceful_shutdown_finishes_in_flight_and_exits_0() -> None:
    settings = make_settings()
    env = {
        **os.environ,
        "SESSIONFLOW_WEBHOOK_SECRETS": SECRET,
        "SESSIONFLOW_TOPIC_NAMESPACE": settings.topic_namespace,
        "SESSIONFLOW_PARTITIONS": "3",
        "SESSIONFLOW_HTTP_HOST": "127.0.0.1",
        "SESSIONFLOW_HTTP_PORT": str(settings.http_port),
        "SESSIONFLOW_ADMIN_HOST": "127.0.0.1",
        "SESSIONFLOW_ADMIN_PORT": str(settings.admin_port),
        "SESSIONFLOW_BODY_TIMEOUT_SECONDS": "4",
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
    }
    code = "from producer.server import serve; from producer.settings import ProducerSettings; serve(ProducerSettings())"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        await _wait_ready(settings.admin_port)
        body = _valid()
        request = build_request(body, _signed(body))
        # Half a request in flight, then SIGTERM, then the rest: it must still be stored and answered.
        in_flight = asyncio.create_task(
            raw_http(settings.http_port, request, pause_after=len(request) - 20, pause_s=1.0)
        )
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        resp = await in_flight
        assert resp.status == 202
        async with asyncio.timeout(TIMEOUT_S):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    logs = err.decode()
    assert proc.returncode == 0, logs
    [record] = await consume(settings, Topics.for_settings(settings).raw, 1)
    assert record.value == body
    lines = [orjson.loads(line) for line in logs.splitlines() if line.startswith("{")]
    outcomes = [line for line in lines if line.get("logger") == "producer.requests"]
    assert [o["outcome"] for o in outcomes] == ["accepted"]
    assert "+14155550100" not in logs
    assert SECRET[6:] not in logs


async def test_refuses_to_start_without_a_secret() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SESSIONFLOW_WEBHOOK_SECRETS"}
    code = "from producer.server import serve; from producer.settings import ProducerSettings; serve(ProducerSettings())"
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode != 0
    assert b"webhook_secrets" in proc.stderr


async def _wait_ready(port: int) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(TIMEOUT_S * 2):
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def test_broker_outage_gives_503_then_recovers(restartable_broker: Any) -> None:
    """Needs the lead's `restartable_broker` fixture: a private broker we may stop and start."""
    settings: ProducerSettings = make_settings(kafka_bootstrap_servers=restartable_broker.bootstrap)
    async with run_producer(settings) as producer, aiohttp.ClientSession() as http:

        async def post() -> tuple[int, bytes]:
            body = _valid()
            async with http.post(
                f"{producer.url}/webhooks/agntix",
                data=body,
                headers={**_signed(body), "content-type": "application/json"},
            ) as resp:
                assert resp.status < 500 or resp.status == 503
                if resp.status == 503:
                    assert "Retry-After" in resp.headers
                return resp.status, body

        async def readyz() -> int:
            async with http.get(f"{producer.admin_url}/readyz") as resp:
                return resp.status

        stored = []
        status, body = await post()
        assert status == 202
        stored.append(body)
        await restartable_broker.stop()
        async with asyncio.timeout(10):
            while True:
                if await readyz() == 503:
                    break
                await asyncio.sleep(0.2)
        for _ in range(5):
            status, _ = await post()
            assert status == 503
        await restartable_broker.start()
        async with asyncio.timeout(60):
            while True:
                if await readyz() == 200:
                    break
                await asyncio.sleep(0.5)
        for _ in range(5):
            status, body = await post()
            assert status == 202
            stored.append(body)
    records = await consume(
        settings, Topics.for_settings(settings).raw, len(stored) + 1, timeout_s=5
    )
    assert set(stored) <= {r.value for r in records}


async def test_a_session_lands_in_the_partition_aiokafka_and_java_would_choose(
    producer: RunningProducer,
) -> None:
    """The worker's table is co-partitioned with the raw topic: murmur2, whichever client wrote."""
    sessions = [str(uuid.uuid4()) for _ in range(60)]
    async with aiohttp.ClientSession() as http:
        for sid in sessions:
            body = session_body("session.created", sid).encode()
            async with http.post(
                f"{producer.url}/webhooks/agntix",
                data=body,
                headers={**_signed(body), "content-type": "application/json"},
            ) as resp:
                assert resp.status == 202
    records = await consume(
        producer.settings, Topics.for_settings(producer.settings).raw, len(sessions)
    )
    assert len(records) == len(sessions)
    partitions = producer.settings.partitions
    for record in records:
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % partitions, record.key
    assert len({r.partition for r in records}) == partitions


async def test_several_processes_share_the_public_port_each_with_its_own_admin_port() -> None:
    settings = make_settings()
    admin_ports = [settings.admin_port, settings.admin_port + 1]
    env = {
        **os.environ,
        "SESSIONFLOW_WEBHOOK_SECRETS": SECRET,
        "SESSIONFLOW_TOPIC_NAMESPACE": settings.topic_namespace,
        "SESSIONFLOW_PARTITIONS": "3",
        "SESSIONFLOW_HTTP_HOST": "127.0.0.1",
        "SESSIONFLOW_HTTP_PORT": str(settings.http_port),
        "SESSIONFLOW_ADMIN_HOST": "127.0.0.1",
        "SESSIONFLOW_ADMIN_PORT": str(settings.admin_port),
        "SESSIONFLOW_HTTP_PROCESSES": "2",
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sessionflow.cli",
        "producer",
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    bodies = [_valid() for _ in range(40)]
    try:
        for port in admin_ports:
            await _wait_ready(port)
        # A fresh connection each: the kernel spreads connections, not requests.
        statuses = [
            (await raw_http(settings.http_port, build_request(b, _signed(b)))).status
            for b in bodies
        ]
        assert set(statuses) == {202}
        accepted = []
        async with aiohttp.ClientSession() as http:
            for port in admin_ports:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    text = await resp.text()
                (line,) = [
                    ln
                    for ln in text.splitlines()
                    if ln.startswith(
                        'sessionflow_webhooks_total{event_type="session.created",outcome="accepted"}'
                    )
                ]
                accepted.append(float(line.split()[-1]))
        assert sum(accepted) == len(bodies)
        assert min(accepted) > 0, accepted
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT_S):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    records = await consume(settings, Topics.for_settings(settings).raw, len(bodies))
    assert sorted(r.value for r in records) == sorted(bodies)
