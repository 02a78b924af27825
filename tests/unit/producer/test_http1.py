"""The public listener's HTTP over loopback: connections, order, limits, deadlines, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest

from producer.app import ProducerApp
from producer.http1 import MAX_HEADER_BYTES, PublicListener
from producer.publisher import Delivered
from producer.server import bind
from tests.http_wire import read_response
from tests.polling import wait_until
from tests.unit.producer.asgi import BODY, FakePublisher, signed


class GatedPublisher(FakePublisher):
    """Holds every delivery report until `gate` is set: a Kafka that takes its time."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0
        self._held: set[asyncio.Task[None]] = set()

    def _report(self, done: Delivered, failure: Exception | None) -> None:
        self.waiting += 1
        held = asyncio.create_task(self._after_gate(done, failure))
        self._held.add(held)
        held.add_done_callback(self._held.discard)

    async def _after_gate(self, done: Delivered, failure: Exception | None) -> None:
        await self.gate.wait()
        done(failure)


@pytest.fixture
def publisher() -> GatedPublisher:
    publisher = GatedPublisher()
    publisher.gate.set()
    return publisher


@contextlib.asynccontextmanager
async def listening(
    app: ProducerApp, *, keep_alive_s: float = 30.0, shutdown_timeout_s: float = 2.0
) -> AsyncIterator[PublicListener]:
    listener = PublicListener(
        app,
        request_timeout_s=0.2,
        max_body=4096,
        shutdown_timeout_s=shutdown_timeout_s,
        keep_alive_s=keep_alive_s,
    )
    await listener.start(bind("127.0.0.1", 0))
    try:
        yield listener
    finally:
        await listener.close()


def webhook(body: bytes = BODY, *, msg_id: str = "msg_1", extra: str = "") -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in signed(body, msg_id=msg_id).items())
    return (
        f"POST /webhooks/agntix HTTP/1.1\r\nhost: t\r\n{head}{extra}"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


_clients: list[asyncio.StreamWriter] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _clients:
        _clients.pop().close()


async def connect(
    listener: PublicListener,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client connection, closed after the test."""
    reader, writer = await asyncio.open_connection(*listener.address)
    _clients.append(writer)
    return reader, writer


async def held_webhook(
    listener: PublicListener, publisher: GatedPublisher
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client whose webhook is in flight: its publish held until `publisher.gate` is set."""
    publisher.gate.clear()
    reader, writer = await connect(listener)
    writer.write(webhook())
    await wait_until(lambda: publisher.waiting, "the publish to begin", 2)
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(2):
        return await reader.read() == b""


async def test_keep_alive_serves_requests_one_after_another(app: ProducerApp) -> None:
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        for i in range(3):
            writer.write(webhook(msg_id=f"msg_{i}"))
            status, headers, body = await read_response(reader)
            assert status == 202
            assert "connection" not in headers
            assert f'"msg_{i}"' in body.decode()
            assert headers["date"].endswith("GMT")
        writer.close()


async def test_http_1_0_without_keep_alive_is_answered_and_closed(app: ProducerApp) -> None:
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        writer.write(webhook().replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        status, headers, _ = await read_response(reader)
        assert (status, headers["connection"]) == (202, "close")
        assert await closed_by_server(reader)


async def test_pipelined_requests_are_answered_in_order(
    app: ProducerApp, publisher: GatedPublisher
) -> None:
    publisher.gate.clear()
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        liveness = b"GET /livez HTTP/1.1\r\nhost: t\r\n\r\n"
        writer.write(webhook(msg_id="msg_a") + liveness + webhook(msg_id="msg_b"))
        await wait_until(lambda: publisher.waiting, "the publish to begin", 2)
        await asyncio.sleep(0.05)
        # The liveness answer is ready at once, but it waits for the webhook ahead of it.
        assert publisher.waiting == 1
        publisher.gate.set()
        answers = [await read_response(reader) for _ in range(3)]
        assert [a[0] for a in answers] == [202, 200, 202]
        assert b'"msg_a"' in answers[0][2]
        assert b'"msg_b"' in answers[2][2]
        assert [body for _, body, _ in publisher.raw] == [BODY, BODY]
        writer.close()


async def test_expect_100_continue_is_answered_before_the_body(app: ProducerApp) -> None:
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        head, body = webhook(extra="expect: 100-continue\r\n").split(b"\r\n\r\n", 1)
        writer.write(head + b"\r\n\r\n")
        async with asyncio.timeout(2):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        assert (await read_response(reader))[0] == 202
        writer.close()


async def test_a_chunked_body_is_stored_whole(app: ProducerApp, publisher: FakePublisher) -> None:
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        head = (
            webhook()
            .split(b"\r\n\r\n", 1)[0]
            .replace(b"content-length: %d" % len(BODY), b"transfer-encoding: chunked")
        )
        parts = [BODY[:7], BODY[7:40], BODY[40:]]
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
        writer.write(head + b"\r\n\r\n" + chunked)
        assert (await read_response(reader))[0] == 202
        assert publisher.raw[0][1] == BODY
        writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"this is not HTTP\r\n\r\n",
        b"POST /webhooks/agntix HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
    ],
    ids=["garbage", "two lengths"],
)
async def test_what_is_not_http_we_speak_is_400_and_closed(
    app: ProducerApp, request_bytes: bytes
) -> None:
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        writer.write(request_bytes)
        status, headers, body = await read_response(reader)
        assert (status, headers["connection"]) == (400, "close")
        assert orjson.loads(body)["error"] == "malformed_http"
        assert await closed_by_server(reader)
    text = app.metrics.render().decode()
    assert 'sessionflow_webhooks_total{event_type="unknown",outcome="bad_request"} 1.0' in text


async def test_a_refusal_is_not_held_for_a_client_waiting_to_continue(app: ProducerApp) -> None:
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        head = webhook(extra="expect: 100-continue\r\n").split(b"\r\n\r\n", 1)[0]
        writer.write(head.replace(b"application/json", b"text/plain") + b"\r\n\r\n")
        status, headers, _ = await read_response(reader)
        assert (status, headers["connection"]) == (415, "close")


async def test_the_absolute_form_of_the_url_is_the_same_path(
    app: ProducerApp, publisher: FakePublisher
) -> None:
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        writer.write(webhook().replace(b"POST /", b"POST http://example.test/", 1))
        assert (await read_response(reader))[0] == 202
        assert len(publisher.raw) == 1


@pytest.mark.parametrize(
    "upgrade",
    [
        "connection: upgrade\r\nupgrade: websocket",
        "connection: upgrade, http2-settings\r\nupgrade: h2c",
    ],
    ids=["websocket", "h2c"],
)
async def test_an_upgrade_is_ignored_the_request_answered_and_closed(
    app: ProducerApp, upgrade: str
) -> None:
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        writer.write(f"GET /livez HTTP/1.1\r\nhost: t\r\n{upgrade}\r\n\r\n".encode())
        answer = await read_response(reader)
        assert (answer[0], answer[1]["connection"]) == (200, "close")
        assert await closed_by_server(reader)


H2C = "connection: upgrade, http2-settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n"


@pytest.mark.parametrize("split", [None, 0, 7], ids=["one-write", "head-then-body", "mid-body"])
async def test_an_upgrade_requests_body_is_read_past_the_parser(
    app: ProducerApp, publisher: GatedPublisher, split: int | None
) -> None:
    """The parser ends an upgrade request at its head (curl --http2 on a plain URL sends one):
    the body is read here, so a genuine webhook is verified and stored, not refused as
    unsigned."""
    request = webhook(extra=H2C)
    head_end = request.index(b"\r\n\r\n") + 4
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        if split is None:
            writer.write(request)
        else:
            writer.write(request[: head_end + split])
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(request[head_end + split :] + b"GET /livez HTTP/1.1\r\n\r\n")
        status, headers, _ = await read_response(reader)
        assert (status, headers["connection"]) == (202, "close")
        assert [body for _, body, _ in publisher.raw] == [BODY]
        assert await closed_by_server(reader)  # nothing after the body is read


async def test_an_upgrade_requests_body_has_the_cap_and_the_deadline(app: ProducerApp) -> None:
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        writer.write(webhook(b"x" * 5000, extra=H2C))
        assert (await read_response(reader))[0] == 413
        reader, writer = await connect(listener)
        writer.write(webhook(extra=H2C)[:-10])
        status, _, body = await read_response(reader)
        assert (status, b"body_timeout" in body) == (408, True)


async def test_an_upgrade_request_with_a_chunked_body_is_400(app: ProducerApp) -> None:
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        head = "".join(f"{k}: {v}\r\n" for k, v in signed(BODY).items())
        writer.write(
            f"POST /webhooks/agntix HTTP/1.1\r\nhost: t\r\n{head}{H2C}"
            "transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode()
        )
        status, headers, body = await read_response(reader)
        assert (status, headers["connection"]) == (400, "close")
        assert orjson.loads(body)["error"] == "malformed_http"


async def test_headers_over_the_cap_are_431(app: ProducerApp) -> None:
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        writer.write(b"POST /webhooks/agntix HTTP/1.1\r\nhost: t\r\n")
        filler = b"x-filler: " + b"f" * 1000 + b"\r\n"
        with contextlib.suppress(ConnectionError):
            for _ in range(MAX_HEADER_BYTES // 1000 + 2):
                writer.write(filler)
            await writer.drain()
        status, headers, body = await read_response(reader)
        assert (status, headers["connection"]) == (431, "close")
        assert orjson.loads(body)["error"] == "headers_too_large"


async def test_slow_headers_are_408_like_a_slow_body(app: ProducerApp) -> None:
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        writer.write(b"POST /webhooks/agntix HTTP/1.1\r\nhost: t\r\n")
        status, headers, body = await read_response(reader)
        assert (status, headers["connection"]) == (408, "close")
        assert b"body_timeout" in body


async def test_an_idle_connection_is_closed_after_keep_alive(app: ProducerApp) -> None:
    async with listening(app, keep_alive_s=0.2) as listener:
        reader, writer = await connect(listener)
        writer.write(webhook())
        assert (await read_response(reader))[0] == 202
        assert await closed_by_server(reader)
        assert not listener.connections


async def test_closing_answers_what_is_in_flight_then_closes(
    app: ProducerApp, publisher: GatedPublisher
) -> None:
    async with listening(app) as listener:
        idle_reader, _idle = await connect(listener)
        reader, _writer = await held_webhook(listener, publisher)
        address = listener.address
        closing = asyncio.create_task(listener.close())
        assert await closed_by_server(idle_reader)
        with pytest.raises(ConnectionError):
            await asyncio.open_connection(*address)
        assert not closing.done()
        publisher.gate.set()
        status, headers, _ = await read_response(reader)
        assert (status, headers["connection"]) == (202, "close")
        assert await closed_by_server(reader)
        await asyncio.wait_for(closing, 2)
        assert len(publisher.raw) == 1


async def test_closing_cuts_what_outlasts_the_shutdown_timeout(
    app: ProducerApp, publisher: GatedPublisher
) -> None:
    async with listening(app, shutdown_timeout_s=0.3) as listener:
        reader, _writer = await held_webhook(listener, publisher)
        await asyncio.wait_for(listener.close(), 2)
        with contextlib.suppress(ConnectionError):
            assert await closed_by_server(reader)
        assert not listener.connections


async def test_a_client_that_leaves_while_kafka_answers_still_has_its_event_stored(
    app: ProducerApp, publisher: GatedPublisher
) -> None:
    async with listening(app) as listener:
        _reader, writer = await held_webhook(listener, publisher)
        writer.close()
        await wait_until(lambda: not listener.connections, "the client to be gone", 2)
        publisher.gate.set()
        await wait_until(lambda: publisher.raw, "the event to be stored", 2)


async def test_a_defect_in_the_app_is_500_and_logged(
    app: ProducerApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("a defect")

    monkeypatch.setattr(app, "route", broken)
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        writer.write(webhook())
        status, headers, body = await read_response(reader)
        assert (status, headers["connection"]) == (500, "close")
        assert orjson.loads(body)["error"] == "internal_error"
    assert "RuntimeError: a defect" in caplog.text
    text = app.metrics.render().decode()
    assert 'sessionflow_webhooks_total{event_type="unknown",outcome="internal_error"} 1.0' in text


@pytest.mark.parametrize("when", ["handed_over", "reported"])
async def test_a_defect_while_publishing_is_500_and_the_connection_closes(
    app: ProducerApp, publisher: FakePublisher, caplog: pytest.LogCaptureFixture, when: str
) -> None:
    defect = RuntimeError("not a refusal Kafka gives")
    if when == "handed_over":
        publisher.error = defect
    else:
        publisher.failure = defect
    async with listening(app) as listener:
        reader, writer = await connect(listener)
        writer.write(webhook())
        status, headers, _ = await read_response(reader)
        assert (status, headers["connection"]) == (500, "close")
        assert await closed_by_server(reader)
    assert "not a refusal Kafka gives" in caplog.text
    text = app.metrics.render().decode()
    assert 'sessionflow_webhooks_total{event_type="unknown",outcome="internal_error"} 1.0' in text
