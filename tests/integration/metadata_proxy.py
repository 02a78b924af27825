"""A loopback TCP proxy in front of a broker that can play a clean shutdown's last answer.

The broker behind it advertises the proxy's port, so its clients reach it only through here;
everything passes byte for byte, except when `fence()` is called. Then the proxy plays the end
of a single broker's controlled shutdown: the next Metadata answer lists no broker (fenced, the
broker no longer counts itself live) and the connection closes right behind it as the broker
stops; connections are refused until `restore()`.

When librdkafka (2.13 to 2.16 at least) sees that close before it handles the answer, it drops
the broker the answer left out, cancels the re-bootstrap the close had started, and never
connects again, even once the broker is back (librdkafka issue 5301, its test 0193). A real
broker did that here about once in 80 clean bounces; sending the answer and the close together
makes it about one fence in two.

`hold()` plays a network partition instead: connections stay open, new ones are taken, and no
byte passes either way until `release()`, when what was held goes on (TCP retransmits what a
short partition held up). Neither side learns of it from a closed connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from types import TracebackType

_METADATA = 3
_FIRST_FLEXIBLE = 9  # Metadata v9 on: compact arrays and strings, tagged fields


class MetadataProxy:
    def __init__(self, upstream: str, port: int) -> None:
        host, _, upstream_port = upstream.rpartition(":")
        self._upstream = (host, int(upstream_port))
        self.port = port
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._fencing = False
        self._went_down = asyncio.Event()
        self._down: asyncio.Task[None] | None = None
        self._passing = asyncio.Event()
        self._passing.set()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> MetadataProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self.release()  # a held frame would keep its connection's task waiting for good
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    def fence(self) -> None:
        """Answer the next Metadata request with no broker, then go down (see the module)."""
        self._fencing = True

    async def fenced(self) -> None:
        """Wait until that answer went out and the proxy is down."""
        await self._went_down.wait()
        assert self._down is not None
        await self._down

    def hold(self) -> None:
        """A network partition: nothing passes from now on, either way (see the module)."""
        self._passing.clear()

    def release(self) -> None:
        """The partition heals: what was held, and everything after it, passes again."""
        self._passing.set()

    async def restore(self) -> None:
        """Listen again: the broker is back."""
        self._down = None
        self._went_down.clear()
        await self.__aenter__()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._writers.add(client_w)
        try:
            await self._relay(client_r, client_w)
        finally:
            client_w.close()
            self._writers.discard(client_w)
            self._connections.discard(task)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection(*self._upstream)
        except OSError:
            return
        self._writers.add(broker_w)
        versions: dict[int, int] = {}  # correlation id -> version, of Metadata requests

        def request(frame: bytes) -> tuple[bytes, bool]:
            api_key, version, correlation = struct.unpack_from(">hhi", frame)
            if api_key == _METADATA:
                versions[correlation] = version
            return frame, False

        def answer(frame: bytes) -> tuple[bytes, bool]:
            (correlation,) = struct.unpack_from(">i", frame)
            version = versions.pop(correlation, None)
            if version is None or not self._fencing:
                return frame, False
            # The close follows this answer at once, and nothing answers any more.
            self._fencing = False
            self._down = asyncio.create_task(self.__aexit__(None, None, None))
            self._went_down.set()
            return frame[:4] + _without_brokers(version, frame[4:]), True

        pumps = (
            asyncio.create_task(_pump(client_r, broker_w, request, self._passing)),
            asyncio.create_task(_pump(broker_r, client_w, answer, self._passing)),
        )
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            broker_w.close()
            self._writers.discard(broker_w)


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handle: Callable[[bytes], tuple[bytes, bool]],
    passing: asyncio.Event,
) -> None:
    """Frames from reader to writer, each as `handle` makes it, until it says that was the last;
    a frame waits while `passing` is clear."""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            frame = await _frame(reader)
            await passing.wait()
            frame, last = handle(frame)
            writer.write(struct.pack(">i", len(frame)) + frame)
            if last:
                return
            await writer.drain()


async def _frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _without_brokers(version: int, body: bytes) -> bytes:
    """A Metadata answer (after the correlation id) with its broker list emptied."""
    buf = _Buffer(body, flexible=version >= _FIRST_FLEXIBLE)
    if buf.flexible:
        buf.skip_tags()  # the response header's
    if version >= 3:
        buf.pos += 4  # throttle_time_ms
    head = buf.pos
    for _ in range(buf.array_len()):
        buf.pos += 4  # node_id
        buf.skip_string()  # host
        buf.pos += 4  # port
        if version >= 1:
            buf.skip_string()  # rack
        if buf.flexible:
            buf.skip_tags()
    empty = b"\x01" if buf.flexible else struct.pack(">i", 0)
    return body[:head] + empty + body[buf.pos :]


class _Buffer:
    def __init__(self, data: bytes, *, flexible: bool) -> None:
        self.data, self.flexible, self.pos = data, flexible, 0

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def array_len(self) -> int:
        if self.flexible:
            return self.uvarint() - 1
        (count,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return int(count)

    def skip_string(self) -> None:
        if self.flexible:
            size = self.uvarint() - 1
        else:
            (size,) = struct.unpack_from(">h", self.data, self.pos)
            self.pos += 2
        self.pos += max(size, 0)

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.pos += self.uvarint()  # size, then the value
