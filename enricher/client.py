"""The HTTP shell around enricher/fetch.py: one aiohttp connection pool, the rate limit, the wire.

aiohttp, not httpx: it is already installed (faust serves its web pages with it), it is
asyncio-native with a bounded connection pool (TCPConnector) and per-request timeouts, and it
lets us read a body in chunks and stop at a byte cap. httpx would add a runtime dependency
for the same features.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Final

import aiohttp

from enricher import fetch
from enricher.metrics import EnricherMetrics, status_label
from enricher.ratelimit import RateLimiter
from enricher.records import FailureReason
from enricher.retry import parse_retry_after
from enricher.settings import EnricherSettings
from sessionflow import __version__

log = logging.getLogger("enricher.client")

_CHUNK: Final = 64 * 1024


def policy_of(settings: EnricherSettings) -> fetch.Policy:
    return fetch.Policy(
        max_attempts=settings.enricher_max_attempts,
        deadline_s=settings.enricher_session_deadline_seconds,
        request_timeout_s=settings.enricher_request_timeout_seconds,
        backoff_initial_s=settings.enricher_backoff_initial_seconds,
        backoff_max_s=settings.enricher_backoff_max_seconds,
        max_pages=settings.enricher_max_pages,
        max_bytes=settings.max_transcript_bytes,
        cursor_param=settings.enricher_cursor_param,
    )


class AgntixClient:
    """Fetches transcripts; one instance (one pool, one rate limit) per process."""

    def __init__(self, settings: EnricherSettings, metrics: EnricherMetrics) -> None:
        self.settings = settings
        self.policy = policy_of(settings)
        self.metrics = metrics
        self.limiter = RateLimiter(settings.enricher_rate_per_second)
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.settings.enricher_concurrency,
            limit_per_host=self.settings.enricher_concurrency,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={
                **self.settings.auth_headers(),
                "Accept": "application/json",
                "User-Agent": f"sessionflow-enricher/{__version__}",
            },
            # Each request gets its own deadline (fetch.Request.timeout_s).
            timeout=aiohttp.ClientTimeout(total=None),
            raise_for_status=False,
            # Cookies would make requests depend on each other's answers.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch_transcript(self, session_id: str) -> fetch.Finished | fetch.Unauthorized:
        """Every page of one session's messages, with retries, within the session's deadline."""
        started = time.monotonic()
        state, first = fetch.begin(self.settings.messages_url(session_id), started, self.policy)
        action: fetch.Action = first
        while isinstance(action, fetch.Request):
            if action.delay_s > 0:
                await asyncio.sleep(action.delay_s)
            await self.limiter.acquire()
            seen = await self._send(action)
            retries = state.retries
            state, action = fetch.step(
                state, seen, time.monotonic(), time.time(), self._random.random(), self.policy
            )
            if state.retries > retries:
                self._count_retry(seen)
        if isinstance(action, fetch.Finished):
            self.metrics.fetch_seconds.observe(time.monotonic() - started)
        return action

    async def _send(self, request: fetch.Request) -> fetch.Observation:
        assert self._session is not None, "start() first"  # noqa: S101 - a programming error
        try:
            async with self._session.get(
                request.url,
                allow_redirects=False,  # the credential must never follow a redirect elsewhere
                timeout=aiohttp.ClientTimeout(total=request.timeout_s),
            ) as response:
                body, truncated = await _read_capped(response, request.budget)
                answer = fetch.Answer(
                    status=response.status,
                    body=body,
                    retry_after=response.headers.get("Retry-After"),
                    truncated=truncated,
                )
        except TimeoutError:
            self.metrics.request("timeout")
            return fetch.Failure("timeout")
        except (aiohttp.ClientError, OSError) as exc:
            # The exception's text may quote the request; only its type is logged.
            log.debug("request failed: %s", type(exc).__name__)
            self.metrics.request("connection_error")
            return fetch.Failure("connection_error")
        self.metrics.request(status_label(answer.status))
        if answer.status == 429:
            # The limit is the whole client's, not one session's: every request waits.
            asked = parse_retry_after(answer.retry_after, time.time())
            if asked is not None:
                self.limiter.defer(min(asked, self.policy.deadline_s))
        return answer

    def _count_retry(self, seen: fetch.Observation) -> None:
        if isinstance(seen, fetch.Failure):
            reason = (
                FailureReason.TIMEOUT if seen.kind == "timeout" else FailureReason.CONNECTION_ERROR
            )
            self.metrics.retry(reason, None)
        else:
            self.metrics.retry(FailureReason.HTTP_STATUS, seen.status)


async def _read_capped(response: aiohttp.ClientResponse, budget: int) -> tuple[bytes, bool]:
    """The body, at most `budget` bytes; True when there was more (it is not read further)."""
    length = response.content_length
    if length is not None and length > budget:
        return b"", True
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > budget:
            return b"", True
        chunks.append(chunk)
    return b"".join(chunks), False
