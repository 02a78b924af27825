"""A bare endpoint on the producer's own HTTP layer (producer/http1.py): each request read whole
and answered 202 at once, no signature, no parse, no Kafka. B1's second baseline: the producer
over this is what the producer's own work costs beyond its HTTP.

    python bench/bare_http1.py PORT   (a script: it imports only the installed producer)
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

from producer.http1 import Answer, Headers, PublicListener, Reply
from producer.server import bind

_OK = Answer(202, b'{"status":"accepted"}')
_READY = Answer(200, b'{"status":"ok"}')
_NOT_FOUND = Answer(404, b'{"error":"not_found"}')


class BareIntake:
    """Every POST is taken; every other request is 404 but GET / (the bench's readiness probe)."""

    def route(self, method: str, path: str, headers: Headers, started: float) -> Answer | None:
        if method == "POST":
            return None
        return _READY if path == "/" else _NOT_FOUND

    def webhook(self, headers: Headers, body: bytes, started: float, reply: Reply) -> Answer:
        return _OK

    def body_too_large(self, size: int, headers: Headers, started: float) -> Answer:
        return Answer(413, b"{}", close=True)

    def body_timeout(self, headers: Headers, started: float) -> Answer:
        return Answer(408, b"{}", close=True)

    def client_left(self, headers: Headers, started: float) -> None:
        return None

    def malformed(self, started: float, *, head_too_large: bool = False) -> Answer:
        return Answer(431 if head_too_large else 400, b"{}", close=True)

    def failed(self, started: float) -> Answer:
        return Answer(500, b"{}", close=True)


async def serve(port: int) -> None:
    listener = PublicListener(
        BareIntake(), request_timeout_s=5.0, max_body=1024 * 1024, shutdown_timeout_s=1.0
    )
    await listener.start(bind("127.0.0.1", port))
    await asyncio.Event().wait()  # until the bench stops the process


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
