"""The public listener: HTTP/1.1 on httptools' parser and asyncio's transports, no ASGI.

The webhook is the producer's one hot path, and under uvicorn the request cycle around it (the
ASGI scope, the receive and send messages, a response built from header lists) cost more of the
event loop than our handler did. Here the parser's callbacks collect a request, the app decides
(`Intake.route` from the headers, `Intake.webhook` once the body is whole), and the answer goes
out in one write: +42% accepted webhooks per second and -32% CPU per request against the same
app on uvicorn, in alternating rounds (bench/results/producer-experiments.md, section 24). A
webhook handed to Kafka is answered from the delivery report's callback, with no task per
request (section 25). The admin listener stays on uvicorn. Only httptools' public interface is
used (the parser and its callbacks, `parse_url`, its exceptions), verified on the version
`uv.lock` holds.

What this owns, per connection:
- requests answered one at a time, in order; a pipelined request waits, reading paused;
- a deadline for each request to arrive whole (headers and body), answered 408;
- the body cap while the body streams in (413), headers capped too (431);
- `Expect: 100-continue`, keep-alive (HTTP/1.0 and 1.1 rules, as httptools reads them), HEAD;
- an upgrade (WebSocket, h2c) ignored, as HTTP allows: the request is answered and the connection
  closed. The parser ends an upgrade request at its head, so its `content-length` body is read
  here (a chunked one is refused, 400): else a genuine webhook sent with `Upgrade: h2c`, as
  `curl --http2` sends to a plain URL, was verified without its body and refused 401;
- an idle keep-alive connection closed after `keep_alive_s`;
- at shutdown: no new connections, idle ones closed, every request in flight answered before its
  connection closes, for at most `shutdown_timeout_s`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import NamedTuple, Protocol, TypeAlias, cast
from urllib.parse import unquote

import httptools

from producer.tasks import Background

log = logging.getLogger("producer.http")

Headers: TypeAlias = dict[bytes, bytes]

# Bytes of request line and headers a request may send: far above any webhook's, far below memory.
MAX_HEADER_BYTES = 64 * 1024
KEEP_ALIVE_S = 30.0
# How often every connection's deadlines are checked: a request's arrival and a keep-alive's idle
# time. One scan of the connections, no timer or deadline entry per request.
CHECK_INTERVAL_S = 0.1
_REASONS = {
    100: b"Continue",
    200: b"OK",
    202: b"Accepted",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    415: b"Unsupported Media Type",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Answer(NamedTuple):
    """A response: status, JSON body, extra headers, and whether the connection closes after."""

    status: int
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()
    close: bool = False


# How a webhook answered later reaches its connection.
Reply: TypeAlias = "Callable[[Answer], None]"


class Intake(Protocol):
    """What the listener asks of the app (producer.app.ProducerApp)."""

    def route(self, method: str, path: str, headers: Headers, started: float) -> Answer | None: ...

    def webhook(self, headers: Headers, body: bytes, started: float, reply: Reply) -> Answer | None:
        """The answer now, or None and `reply(answer)` later, from the loop (once Kafka spoke)."""

    def body_too_large(self, size: int, headers: Headers, started: float) -> Answer: ...

    def body_timeout(self, headers: Headers, started: float) -> Answer: ...

    def client_left(self, headers: Headers, started: float) -> None: ...

    def malformed(self, started: float, *, head_too_large: bool = False) -> Answer: ...

    def failed(self, started: float) -> Answer: ...


class _Date:
    """The Date header, formatted once a second."""

    __slots__ = ("second", "value")

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def header(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self.value


def render(answer: Answer, date: bytes, *, close: bool, head_only: bool = False) -> bytes:
    """The response's bytes: status line, headers, body (none for HEAD)."""
    status = answer.status
    parts = [
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        % (status, _REASONS.get(status, b""), len(answer.body)),
        date,
    ]
    for name, value in answer.headers:
        parts.append(name + b": " + value + b"\r\n")
    if close:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(answer.body)
    return b"".join(parts)


class _Request:
    """One request on a connection, from its first byte to its answer."""

    __slots__ = (
        "answer",
        "body",
        "chunks",
        "complete",
        "head_only",
        "header_bytes",
        "headers",
        "keep_alive",
        "size",
        "started",
        "unread",
        "url",
    )

    def __init__(self, started: float) -> None:
        self.started = started
        self.url = b""
        self.headers: Headers = {}
        self.header_bytes = 0
        self.chunks: list[bytes] = []
        self.size = 0
        self.body = b""
        # Decided before the body was read (a refusal, liveness): the body is read and dropped.
        self.answer: Answer | None = None
        self.complete = False
        self.keep_alive = True
        self.head_only = False
        # The body of an upgrade request, which the parser leaves unread: read as it comes.
        self.unread = 0


class _Connection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, listener: PublicListener) -> None:
        self._listener = listener
        self._intake = listener.intake
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        # In arrival order; the head is the one being answered, the tail may still be arriving.
        self._requests: collections.deque[_Request] = collections.deque()
        self._reading: _Request | None = None
        self._answering = False  # the head request's webhook task runs
        self._done = False  # the connection closes after what is queued; read no more
        # Reading pauses while a whole request waits behind another, or while the client does
        # not read its answers (the transport's buffer is full).
        self._pipelined = False
        self._write_paused = False
        self._read_paused = False
        self._idle_since = time.perf_counter()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)  # a stream server's are
        self._listener.connections.add(self)

    def data_received(self, data: bytes) -> None:
        request = self._reading
        if request is not None and request.unread:
            self._read_unparsed(request, data)
            return
        if self._done:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # No protocol but HTTP/1.1 is spoken here (no WebSocket, no h2c): the upgrade is
            # ignored, as HTTP allows, and the request answered; nothing after it is parsed.
            # The parser ended the request at its head, so its body, if any, is read here.
            self._done = True
            request = self._reading
            if request is not None and request.unread:
                self._read_unparsed(request, data[upgrade.args[0] :])
            else:
                self._advance()
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _TooLarge):
                self._fail(self._intake.malformed(self._started(), head_too_large=True))
            else:  # one of our callbacks failed: a defect, not the client's
                log.error("request handling failed", exc_info=exc)
                self._fail(self._intake.failed(self._started()))
        except httptools.HttpParserError:
            self._fail(self._intake.malformed(self._started()))

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.connections.discard(self)
        self._done = True
        # Whole requests still queued were never handed to Kafka: no answer, nothing stored, so
        # the sender retries. The one being answered ends on its own (its write is skipped).
        for request in self._requests:
            if not request.complete:
                self._intake.client_left(request.headers, request.started)
        self._requests.clear()
        self._listener.closed.set()

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self._done:  # the rest of a read after a refusal that closes: not read
            return
        request = _Request(time.perf_counter())
        self._reading = request
        self._requests.append(request)

    def on_url(self, url: bytes) -> None:
        request = self._reading
        if request is not None:
            request.url += url
            request.header_bytes += len(url)
            if request.header_bytes > MAX_HEADER_BYTES:
                raise _TooLarge  # stops the parser: data_received answers 431

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._reading
        if request is not None:
            request.header_bytes += len(name) + len(value)
            if request.header_bytes > MAX_HEADER_BYTES:
                raise _TooLarge
            request.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        request = self._reading
        if request is None:
            return
        method = self._parser.get_method().decode("latin-1")
        # An upgrade stops the parser after this head: answered, and the connection closed.
        upgrade = self._parser.should_upgrade()
        request.keep_alive = self._parser.should_keep_alive() and not upgrade
        request.head_only = method == "HEAD"
        url = request.url
        # The origin form, else the absolute form ("http://host/path"), which servers accept.
        raw_path = url.split(b"?", 1)[0] if url.startswith(b"/") else httptools.parse_url(url).path
        path = (raw_path or b"").decode("latin-1")
        if "%" in path:
            path = unquote(path, encoding="latin-1")
        answer = self._intake.route(method, path, request.headers, request.started)
        if upgrade and answer is None:
            answer = self._upgrade_body(request)
        expects_continue = request.headers.get(b"expect", b"").lower() == b"100-continue"
        if answer is None:
            if expects_continue and self._requests[0] is request and self._transport is not None:
                self._transport.write(_CONTINUE)
            return
        if expects_continue:  # the client waits for a go-ahead it will not get: answer now
            answer = answer._replace(close=True)
        request.answer = answer
        if answer.close:
            # Refused on its head alone (a body too large, a length unreadable): answered
            # without reading further.
            self._finish_reading(request)

    def on_body(self, chunk: bytes) -> None:
        request = self._reading
        if request is None:
            return
        request.size += len(chunk)
        if request.size > self._listener.max_body:
            if request.answer is None:
                request.answer = self._intake.body_too_large(
                    request.size, request.headers, request.started
                )
            else:  # a refused request's body is dropped, but not without end
                request.answer = request.answer._replace(close=True)
            self._finish_reading(request)
        elif request.answer is None:
            request.chunks.append(chunk)

    def on_message_complete(self) -> None:
        request = self._reading
        if request is None or request.unread:
            return
        chunks = request.chunks
        request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        request.chunks = []
        self._finish_reading(request)

    # an upgrade request's body

    def _upgrade_body(self, request: _Request) -> Answer | None:
        """Prepare to read the body the parser will not (it ends an upgrade request at its head);
        a chunked one is refused, as unreadable without the parser. The answer, if refused."""
        if b"transfer-encoding" in request.headers:
            return self._intake.malformed(request.started)
        # The parser checked it: digits only, given once.
        request.unread = int(request.headers.get(b"content-length", b"0"))
        return None

    def _read_unparsed(self, request: _Request, data: bytes) -> None:
        """Bytes of an upgrade request's body, which the parser does not read; nothing after
        the body is read."""
        take = data[: request.unread]
        request.unread -= len(take)
        if take:
            self.on_body(take)  # the cap applies: a refusal finishes the request
        if request.complete:
            request.unread = 0
        elif not request.unread:
            self.on_message_complete()

    # answering

    def _finish_reading(self, request: _Request) -> None:
        self._reading = None
        request.complete = True
        if request.answer is not None and request.answer.close:
            self._done = True
        if self._requests[0] is not request:
            # Pipelined behind a request still being answered: let the socket fill meanwhile.
            self._pipelined = True
            self._update_reading()
        self._advance()

    def _advance(self) -> None:
        """Answer what can be answered, in order: decided answers at once, a webhook when the
        app has its answer (at once when refused, else once Kafka has spoken)."""
        while self._requests and not self._answering:
            request = self._requests[0]
            if not request.complete:
                return
            answer = request.answer
            if answer is None:
                self._answering = True
                try:
                    answer = self._intake.webhook(
                        request.headers, request.body, request.started, self._answered
                    )
                except Exception as exc:  # a defect: every outcome is the app's to answer
                    log.error("webhook failed", exc_info=exc)
                    answer = self._intake.failed(request.started)
                if answer is None:
                    return
                self._answering = False
            self._write(request, answer)
        if self._answering:
            return
        if self._done or self._listener.closing:
            self._close()
            return
        if self._pipelined:
            self._pipelined = False
            self._update_reading()

    def _answered(self, answer: Answer) -> None:
        """The app's later answer to the webhook at the head of the queue."""
        self._answering = False
        if self._requests:  # else the client left meanwhile: nobody to answer
            self._write(self._requests[0], answer)
        self._advance()

    def _write(self, request: _Request, answer: Answer) -> None:
        self._requests.popleft()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._idle_since = time.perf_counter()
        close = answer.close or not request.keep_alive
        if close or (self._listener.closing and not self._requests):
            close = True
            self._done = True
        transport.write(
            render(answer, self._listener.date.header(), close=close, head_only=request.head_only)
        )
        if close:
            self._requests.clear()
            self._close()

    def _fail(self, answer: Answer) -> None:
        """The bytes are not HTTP we can read: answer after those ahead, then close."""
        self._done = True
        request = self._reading
        if request is None:
            request = _Request(time.perf_counter())
            self._requests.append(request)
        request.answer = answer
        self._finish_reading(request)

    def _started(self) -> float:
        """When the request that failed to parse began (now, if none had)."""
        return self._reading.started if self._reading is not None else time.perf_counter()

    def _update_reading(self) -> None:
        pause = self._pipelined or self._write_paused
        transport = self._transport
        if pause == self._read_paused or transport is None or transport.is_closing():
            return
        self._read_paused = pause
        if pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def check(self, now: float) -> None:
        """The listener's periodic look: a request arriving too slowly gets 408; a connection
        idle for longer than the keep-alive is closed."""
        request = self._reading
        if request is not None:
            if now - request.started > self._listener.request_timeout_s:
                self._timed_out(request)
        elif not self._requests and now - self._idle_since > self._listener.keep_alive_s:
            self._close()

    def _timed_out(self, request: _Request) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        request.answer = self._intake.body_timeout(request.headers, request.started)
        self._done = True
        self._finish_reading(request)

    def _close(self) -> None:
        self._done = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def shut_down(self) -> None:
        """The listener is closing: close now if idle, else after the answers in flight."""
        if not self._requests:
            self._close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class _TooLarge(Exception):
    """Raised in a header callback to stop the parser: the request's head is over the cap."""


class PublicListener:
    """The public socket's server: its connections, their deadlines, its graceful close."""

    def __init__(
        self,
        intake: Intake,
        *,
        request_timeout_s: float,
        max_body: int,
        shutdown_timeout_s: float,
        keep_alive_s: float = KEEP_ALIVE_S,
    ) -> None:
        self.intake = intake
        self.max_body = max_body
        self.request_timeout_s = request_timeout_s
        self.keep_alive_s = keep_alive_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.connections: set[_Connection] = set()
        self.closed = asyncio.Event()
        self.closing = False
        self.date = _Date()
        self._server: asyncio.Server | None = None
        self._checks = Background("http-deadlines", self._check_forever)

    async def start(self, sock: socket.socket) -> None:
        """Listen on a bound socket (producer.server.bind)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.connection, sock=sock)
        self._checks.start()

    def connection(self) -> asyncio.Protocol:
        """The protocol of one new connection: what the server makes for each accepted socket
        (bench/producer_parts.py drives one over a transport of its own)."""
        return _Connection(self)

    @property
    def address(self) -> tuple[str, int]:
        """The host and port listened on (after `start`)."""
        if self._server is None:
            raise RuntimeError("the public listener has not started")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def close(self) -> None:
        """Stop accepting; answer what is in flight, then close every connection; at most
        `shutdown_timeout_s`, after which the rest are cut."""
        self.closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.shut_down()
        deadline = time.monotonic() + self.shutdown_timeout_s
        while self.connections and time.monotonic() < deadline:
            self.closed.clear()
            try:
                await asyncio.wait_for(self.closed.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        if self.connections:
            log.warning("%d connections cut at shutdown", len(self.connections))
            for connection in list(self.connections):
                connection.abort()
        if self._server is not None:
            await self._server.wait_closed()
        await self._checks.stop()

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            now = time.perf_counter()
            for connection in list(self.connections):
                connection.check(now)
