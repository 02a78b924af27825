"""Deliver a traffic plan like Svix does: signed, paced, concurrent, non-2xx retried with backoff."""

from __future__ import annotations

import asyncio
import math
import random
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import aiohttp

from cli import traffic
from sessionflow.events import PLANNED_EVENT_TYPES, SESSION_CREATED, SESSION_ENDED
from sessionflow.signing import HeaderFamily, Signer
from streams.models import IncompleteReason

DEFAULT_URL = "http://127.0.0.1:8080/webhooks/agntix"
# Svix gives up on an attempt after 15 s and counts it as a failure.
DEFAULT_TIMEOUT_S = 15.0
_PROGRESS_TICK_S = 0.25


class HeaderChoice(StrEnum):
    SVIX = "svix"
    WEBHOOK = "webhook"
    MIXED = "mixed"  # per message, stable across its attempts


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Progress so far: `done` deliveries are settled (a 2xx, or out of attempts)."""

    done: int
    total: int
    requests: int
    ok: int
    retries: int
    failed: int


class ProgressSink(Protocol):
    def update(self, snapshot: Snapshot) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class SendReport:
    plan: traffic.Plan
    url: str
    requests: int = 0
    retries: int = 0
    elapsed_s: float = 0.0
    status_counts: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    delivered: set[int] = field(default_factory=set)  # indices into plan.deliveries
    exhausted: set[int] = field(default_factory=set)

    @property
    def delivered_message_ids(self) -> set[str]:
        return {self.plan.deliveries[i].message_id for i in self.delivered}

    @property
    def failed_message_ids(self) -> set[str]:
        """Message ids that never got a 2xx on any delivery (an exact retry shares the id)."""
        tried = {self.plan.deliveries[i].message_id for i in self.exhausted}
        return tried - self.delivered_message_ids

    @property
    def ok(self) -> bool:
        return not self.failed_message_ids

    def latency_s(self, quantile: float) -> float | None:
        """Nearest-rank quantile of the latency of attempts that got an HTTP response."""
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        rank = max(math.ceil(quantile * len(ordered)), 1)
        return ordered[rank - 1]

    def expected(self) -> tuple[set[str], dict[str, IncompleteReason], int]:
        """Completed sessions, incomplete sessions and planned events, given what got a 2xx.

        Equal to the plan's expectations when every delivery succeeded; otherwise a session
        with one half delivered is expected incomplete, and one with none is not expected.
        """
        halves: dict[str, set[str]] = {}
        planned: set[bytes] = set()
        for i in self.delivered:
            d = self.plan.deliveries[i]
            if d.event_type in (SESSION_CREATED, SESSION_ENDED):
                assert d.session_id is not None  # noqa: S101 - session events always carry one
                halves.setdefault(d.session_id, set()).add(d.event_type)
            elif d.event_type in PLANNED_EVENT_TYPES:
                planned.add(d.body)  # a resend has the same bytes: the same event
        complete: set[str] = set()
        incomplete: dict[str, IncompleteReason] = {}
        for session_id, seen in halves.items():
            if len(seen) == 2:
                complete.add(session_id)
            elif SESSION_CREATED in seen:
                incomplete[session_id] = IncompleteReason.CREATED_WITHOUT_ENDED
            else:
                incomplete[session_id] = IncompleteReason.ENDED_WITHOUT_CREATED
        return complete, incomplete, len(planned)

    def summary(self) -> dict[str, Any]:
        """The JSON summary the reliability and benchmark suites read."""
        complete, incomplete, planned = self.expected()
        kinds = Counter(d.kind.value for d in self.plan.deliveries)
        failed = self.failed_message_ids
        return {
            "ok": not failed,
            "url": self.url,
            "parameters": dict(self.plan.parameters),
            "deliveries": len(self.plan.deliveries),
            "deliveries_by_kind": dict(sorted(kinds.items())),
            "requests": self.requests,
            "retries": self.retries,
            "elapsed_seconds": round(self.elapsed_s, 3),
            "requests_per_second": round(self.requests / self.elapsed_s, 1)
            if self.elapsed_s
            else None,
            "status_counts": dict(sorted(self.status_counts.items())),
            "latency_ms": {
                name: None if (v := self.latency_s(q)) is None else round(v * 1000, 3)
                for name, q in (("p50", 0.50), ("p99", 0.99), ("max", 1.0))
            },
            "failures": len(failed),
            "expected": {
                "completed": len(complete),
                "incomplete": len(incomplete),
                "planned_events": planned,
                "complete_session_ids": sorted(complete),
                "incomplete_sessions": dict(sorted(incomplete.items())),
            },
            "delivered_message_ids": sorted(self.delivered_message_ids),
            "failed_message_ids": sorted(failed),
        }


class _Pacer:
    """Token-bucket pacing of request starts to `rate` per second, with a small burst."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        # A burst of 50 ms worth of tokens absorbs event-loop scheduling jitter.
        self._burst_s = max(self._interval, 0.05)
        self._next = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(self._next, now - self._burst_s)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


def backoff_s(attempt: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Delay before attempt `attempt + 1`: exponential from `base_s`, capped, with jitter.

    Svix's schedule (5 s, 5 min, 30 min, 2 h, ...) scaled down so a load test stays short.
    """
    return min(cap_s, base_s * 2.0 ** (attempt - 1)) * rng.uniform(0.5, 1.0)


def _retry_after_s(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from our producer, the backoff applies instead
    return seconds if seconds >= 0 and math.isfinite(seconds) else None


def _family(choice: HeaderChoice, message_id: str) -> HeaderFamily:
    if choice is HeaderChoice.MIXED:
        return HeaderFamily.SVIX if zlib.crc32(message_id.encode()) % 2 else HeaderFamily.WEBHOOK
    return HeaderFamily(choice.value)


async def deliver(
    plan: traffic.Plan,
    url: str,
    secrets: Sequence[str],
    *,
    concurrency: int = 64,
    rate: float | None = None,
    max_attempts: int = 8,
    retry_base_s: float = 0.5,
    retry_cap_s: float = 10.0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    header_family: HeaderChoice | str = HeaderChoice.SVIX,
    progress: ProgressSink | None = None,
) -> SendReport:
    """POST every delivery of `plan`, retrying each until a 2xx or `max_attempts` attempts.

    `progress` gets periodic snapshots; closing it is the caller's business.
    """
    if concurrency < 1 or max_attempts < 1:
        raise ValueError("concurrency and max_attempts must be >= 1")
    if rate is not None and rate <= 0:
        raise ValueError("rate must be > 0 (or None: as fast as possible)")
    signer = Signer(secrets)
    family = HeaderChoice(header_family)
    report = SendReport(plan=plan, url=url)
    deliveries = plan.deliveries
    pacer = _Pacer(rate) if rate else None
    # Jitter only spreads retries out; it has no security role.
    rng = random.Random()  # noqa: S311
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for i in range(len(deliveries)):
        queue.put_nowait((i, 1))
    settled = asyncio.Event()
    remaining = len(deliveries)
    timers: set[asyncio.Task[None]] = set()

    def snapshot() -> Snapshot:
        return Snapshot(
            done=len(deliveries) - remaining,
            total=len(deliveries),
            requests=report.requests,
            ok=len(report.delivered),
            retries=report.retries,
            failed=len(report.exhausted),
        )

    async def requeue_later(delay: float, item: tuple[int, int]) -> None:
        await asyncio.sleep(delay)
        queue.put_nowait(item)

    async def attempt(session: aiohttp.ClientSession, index: int) -> tuple[str, float | None]:
        d = deliveries[index]
        # A fresh timestamp per attempt, as Svix re-signs each retry of the same message id.
        headers = signer.headers(
            _family(family, d.message_id), d.message_id, int(time.time()), d.body
        )
        headers["content-type"] = "application/json"
        started = time.perf_counter()
        try:
            async with session.post(url, data=d.body, headers=headers) as resp:
                await resp.read()
                report.latencies_s.append(time.perf_counter() - started)
                status = str(resp.status)
                if 200 <= resp.status < 300:
                    return status, None
                return status, _retry_after_s(resp.headers.get("Retry-After"))
        except TimeoutError:
            return "timeout", None
        except aiohttp.ClientConnectionError:
            return "connection_error", None
        except aiohttp.ClientError:
            return "client_error", None

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while True:
            index, n = await queue.get()
            if pacer is not None:
                await pacer.wait()
            status, retry_after = await attempt(session, index)
            report.requests += 1
            report.status_counts[status] += 1
            if status.startswith("2") or n >= max_attempts:
                (report.delivered if status.startswith("2") else report.exhausted).add(index)
                remaining -= 1
                if remaining == 0:
                    settled.set()
                continue
            report.retries += 1
            delay = backoff_s(n, base_s=retry_base_s, cap_s=retry_cap_s, rng=rng)
            if retry_after is not None:
                delay = max(delay, min(retry_after, retry_cap_s))
            timer = asyncio.create_task(requeue_later(delay, (index, n + 1)))
            timers.add(timer)
            timer.add_done_callback(timers.discard)

    async def ticker() -> None:
        assert progress is not None  # noqa: S101 - only started with a sink
        while True:
            progress.update(snapshot())
            await asyncio.sleep(_PROGRESS_TICK_S)

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    started = time.perf_counter()
    tasks: list[asyncio.Task[Any]] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        try:
            if progress is not None:
                tasks.append(asyncio.create_task(ticker()))
            workers = [asyncio.create_task(worker(session)) for _ in range(concurrency)]
            tasks += workers
            if remaining:
                waiter = asyncio.create_task(settled.wait())
                tasks.append(waiter)
                # A worker only ends by a bug; surface it rather than wait forever.
                done, _ = await asyncio.wait(
                    [waiter, *workers], return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    if task is not waiter:
                        task.result()
        finally:
            for task in (*tasks, *timers):
                task.cancel()
            await asyncio.gather(*tasks, *timers, return_exceptions=True)
            report.elapsed_s = time.perf_counter() - started
            if progress is not None:
                progress.update(snapshot())
    return report
