"""A small HTTP/1.1 keep-alive load generator on raw asyncio sockets (uvloop when present).

Closed loop (`--rate 0`: every connection sends back to back) or paced (open loop: request i is
due at start + i / rate, and its latency counts from when it was due, so a stalled server cannot
hide its queueing; the `connections` bound the requests in flight). Run as its own process:

    python -m bench.httpload --port P --requests FILE --connections 64 --seconds 10 [--rate R]

prints one JSON object: counts, rates, latency percentiles and this process's CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import orjson

from bench.stats import latency_summary
from bench.webhooks import read_requests

Done = Callable[[int, int, float], None]


class HttpError(RuntimeError):
    """The connection broke or the response could not be parsed."""


class Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, yet have the same API.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buf[:end]).lower()
        pos = head.find(b"content-length:")
        if pos >= 0:
            length = int(head[pos + 15 :].split(b"\r\n", 1)[0])
            if len(self._buf) < end + 4 + length:
                return
            del self._buf[: end + 4 + length]
        elif b"transfer-encoding: chunked" in head:
            last = self._buf.find(b"0\r\n\r\n", end + 4)
            if last < 0:
                return
            del self._buf[: last + 5]
        else:
            del self._buf[: end + 4]
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(int(head[9:12]))

    async def request(self, raw: bytes) -> int:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def connect(port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _transport, conn = await loop.create_connection(Connection, "127.0.0.1", port)
    return conn


async def connect_all(port: int, connections: int) -> list[Connection]:
    return list(await asyncio.gather(*(connect(port) for _ in range(connections))))


async def closed_loop(
    port: int, requests: Sequence[bytes], connections: int, seconds: float
) -> dict[str, object]:
    counts = {"ok": 0, "non2xx": 0, "errors": 0}
    latencies: list[float] = []
    index = itertools.count()
    opened = await connect_all(port, connections)
    start = time.perf_counter()
    deadline = start + seconds

    async def client(conn: Connection) -> None:
        try:
            while (sent := time.perf_counter()) < deadline:
                try:
                    status = await conn.request(requests[next(index) % len(requests)])
                except HttpError:
                    counts["errors"] += 1
                    conn = await connect(port)
                    continue
                latencies.append(time.perf_counter() - sent)
                counts["ok" if 200 <= status < 300 else "non2xx"] += 1
        finally:
            conn.close()

    await asyncio.gather(*(client(conn) for conn in opened))
    return _result(counts, latencies, time.perf_counter() - start)


async def paced(
    port: int,
    requests: Sequence[bytes],
    connections: int,
    rate: float,
    seconds: float | None = None,
    on_done: Done | None = None,
) -> dict[str, object]:
    """Request i is due at start + i / rate; with `seconds` None, each request is sent once."""
    total = len(requests) if seconds is None else int(rate * seconds)
    counts = {"ok": 0, "non2xx": 0, "errors": 0}
    latencies: list[float] = []
    index = itertools.count()
    # Every connection is open before the first request falls due: opening a thousand of them
    # takes longer than the first requests may wait.
    opened = await connect_all(port, connections)
    start = time.perf_counter() + 0.05

    async def client(conn: Connection) -> None:
        try:
            while (i := next(index)) < total:
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    status = await conn.request(requests[i % len(requests)])
                except HttpError:
                    counts["errors"] += 1
                    conn = await connect(port)
                    continue
                now = time.perf_counter()
                latencies.append(now - due)
                counts["ok" if 200 <= status < 300 else "non2xx"] += 1
                if on_done is not None:
                    on_done(i, status, time.time())
        finally:
            conn.close()

    await asyncio.gather(*(client(conn) for conn in opened))
    result = _result(counts, latencies, time.perf_counter() - start)
    result["target_rps"] = rate
    return result


def _result(counts: dict[str, int], latencies: list[float], elapsed: float) -> dict[str, object]:
    done = counts["ok"] + counts["non2xx"]
    return {
        **counts,
        "elapsed_s": round(elapsed, 3),
        "rps": round(done / elapsed, 1),
        "ok_rps": round(counts["ok"] / elapsed, 1),
        **latency_summary(latencies),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s; 0 = closed loop")
    args = parser.parse_args(argv)
    requests = read_requests(args.requests)
    try:
        import uvloop

        runner: Callable[..., object] = uvloop.run
    except ImportError:
        runner = asyncio.run
    if args.rate > 0:
        coro = paced(args.port, requests, args.connections, args.rate, args.seconds)
    else:
        coro = closed_loop(args.port, requests, args.connections, args.seconds)
    result = runner(coro)
    assert isinstance(result, dict)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["loadgen_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    result["loadgen"] = "asyncio-raw" + ("+uvloop" if runner is not asyncio.run else "")
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
