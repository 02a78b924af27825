"""What the worker's and the enricher's /readyz and ends-read gauges say, polled with a deadline
(the cut-off tests: test_worker_readiness.py, test_enricher_readiness.py)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable

import orjson

from tests.integration.metadata_proxy import MetadataProxy

Answer = tuple[int, dict[str, object]]


def readyz(url: str) -> Answer:
    """The status code and JSON body of `url` (a /readyz page)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


async def readyz_says(url: str, status: str, within_s: float) -> Answer:
    """Poll `url` until its body's status is `status`; fail with every answer seen meanwhile."""
    deadline = time.monotonic() + within_s
    seen: list[Answer] = []
    while time.monotonic() < deadline:
        answer = await asyncio.to_thread(readyz, url)
        if answer[1].get("status") == status:
            return answer
        if not seen or seen[-1] != answer:
            seen.append(answer)
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz not {status!r} within {within_s} s; it said {seen}")


async def read_after(read: Callable[[], Awaitable[float]], after: float, within_s: float) -> None:
    """Poll `read` (an ends-read gauge, Unix time) until it is past `after`."""
    deadline = time.monotonic() + within_s
    while (read_at := await read()) <= after:
        assert time.monotonic() < deadline, f"ends last read at {read_at}, not after {after}"
        await asyncio.sleep(0.1)


async def cut_off(proxy: MetadataProxy, url: str, limit_s: float) -> float:
    """Hold every byte at `proxy` (a network partition) until `url` says 503 `unreachable`, as it
    must within `limit_s` and a margin, with at least `limit_s` unanswered. When the hold began
    (Unix time)."""
    proxy.hold()
    held_at = time.time()
    status, body = await readyz_says(url, "unreachable", limit_s + 5)
    assert status == 503
    unanswered = body["unanswered_s"]
    assert isinstance(unanswered, int)
    assert unanswered >= limit_s
    return held_at
