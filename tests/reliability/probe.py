"""A second sender that remembers when each answer came: outage windows measured, not inferred."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp

from cli import traffic
from cli.delivery import SendReport
from sessionflow.signing import HeaderFamily, Signer
from tests.integration.producer_fixtures import SECRET


@dataclass(frozen=True, slots=True)
class Attempt:
    started: float  # time.monotonic()
    ended: float
    status: str
    message_id: str


class Probe:
    """A small second sender that logs every attempt with its times, so that a scenario can say
    what the producer answered inside a fault window. Each delivery is retried until a 2xx;
    after `stop` no new delivery is begun (the ones begun still finish)."""

    def __init__(self, url: str, plan: traffic.Plan, concurrency: int = 4) -> None:
        self.url, self.plan, self.concurrency = url, plan, concurrency
        self.attempts: list[Attempt] = []
        self.report = SendReport(plan=plan, url=url)
        self.stop = asyncio.Event()

    async def run(self, retry_s: float = 0.3, pause_s: float = 0.05) -> SendReport:
        signer = Signer([SECRET])
        queue = list(range(len(self.plan.deliveries)))
        queue.reverse()
        timeout = aiohttp.ClientTimeout(total=15.0)

        async def one(session: aiohttp.ClientSession, index: int) -> None:
            d = self.plan.deliveries[index]
            while True:
                headers = signer.headers(HeaderFamily.SVIX, d.message_id, int(time.time()), d.body)
                headers["content-type"] = "application/json"
                started = time.monotonic()
                try:
                    async with session.post(self.url, data=d.body, headers=headers) as resp:
                        await resp.read()
                        status = str(resp.status)
                except TimeoutError:
                    status = "timeout"
                except aiohttp.ClientError:
                    status = "connection_error"
                self.attempts.append(Attempt(started, time.monotonic(), status, d.message_id))
                self.report.requests += 1
                self.report.status_counts[status] += 1
                if status.startswith("2"):
                    self.report.delivered.add(index)
                    return
                await asyncio.sleep(retry_s)

        async def loop(session: aiohttp.ClientSession) -> None:
            while queue and not self.stop.is_set():
                await one(session, queue.pop())
                await asyncio.sleep(pause_s)

        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(loop(session) for _ in range(self.concurrency)))
        self.report.elapsed_s = time.monotonic() - started
        return self.report

    def within(self, start: float, end: float) -> Counter[str]:
        """Statuses of the attempts that began and ended inside [start, end]."""
        return Counter(a.status for a in self.attempts if a.started >= start and a.ended <= end)

    def first_ok_after(self, moment: float) -> float | None:
        oks = [a.ended for a in self.attempts if a.started >= moment and a.status.startswith("2")]
        return min(oks) - moment if oks else None
