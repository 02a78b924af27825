"""`sessionflow send`: post a signed, realistic traffic plan and retry non-2xx like Svix does."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import sys
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TextIO

import aiohttp
import orjson

from sessionflow import devsecret, traffic
from sessionflow.signing import HeaderFamily, Signer, SigningError

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

    def expected(self) -> tuple[set[str], dict[str, traffic.IncompleteReason], int]:
        """Completed sessions, incomplete sessions and planned events, given what got a 2xx.

        Equal to the plan's expectations when every delivery succeeded; otherwise a session
        with one half delivered is expected incomplete, and one with none is not expected.
        """
        halves: dict[str, set[str]] = {}
        planned: set[bytes] = set()
        for i in self.delivered:
            d = self.plan.deliveries[i]
            if d.event_type in (traffic.SESSION_CREATED, traffic.SESSION_ENDED):
                assert d.session_id is not None  # noqa: S101 - session events always carry one
                halves.setdefault(d.session_id, set()).add(d.event_type)
            elif d.event_type in traffic.PLANNED_EVENT_TYPES:
                planned.add(d.body)  # a resend has the same bytes: the same event
        complete: set[str] = set()
        incomplete: dict[str, traffic.IncompleteReason] = {}
        for session_id, seen in halves.items():
            if len(seen) == 2:
                complete.add(session_id)
            elif traffic.SESSION_CREATED in seen:
                incomplete[session_id] = traffic.IncompleteReason.CREATED_WITHOUT_ENDED
            else:
                incomplete[session_id] = traffic.IncompleteReason.ENDED_WITHOUT_CREATED
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


class PlainProgress:
    """One status line: redrawn in place on a terminal, a periodic line otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, every_s: float = 2.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._every_s = 0.0 if self._tty else every_s
        self._last = -math.inf
        self._started = time.monotonic()
        self._line = ""

    def update(self, snapshot: Snapshot) -> None:
        now = time.monotonic()
        if now - self._last < self._every_s and snapshot.done < snapshot.total:
            return
        self._last = now
        pct = 100.0 * snapshot.done / snapshot.total if snapshot.total else 100.0
        rate = snapshot.requests / max(now - self._started, 1e-9)
        line = (
            f"sent {snapshot.done}/{snapshot.total} ({pct:5.1f}%)  2xx {snapshot.ok}  "
            f"retries {snapshot.retries}  failed {snapshot.failed}  {rate:,.0f} req/s"
        )
        if line == self._line:
            return
        self._line = line
        self._stream.write(f"\r{line}" if self._tty else f"{line}\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._line:
            self._stream.write("\n")
            self._stream.flush()


class RichProgress:
    """A rich progress bar (used when `rich` is installed and stderr is a terminal)."""

    def __init__(self) -> None:
        # rich is optional: present in dev environments, not a runtime dependency.
        from rich.console import Console  # type: ignore[import-not-found, unused-ignore]
        from rich.progress import (  # type: ignore[import-not-found, unused-ignore]
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task("send", total=None, stats="")
        self._progress.start()

    def update(self, snapshot: Snapshot) -> None:
        self._progress.update(
            self._task,
            total=snapshot.total,
            completed=snapshot.done,
            stats=f"2xx {snapshot.ok}  retries {snapshot.retries}  failed {snapshot.failed}",
        )

    def close(self) -> None:
        self._progress.stop()


def _progress_sink() -> ProgressSink:
    if sys.stderr.isatty():
        with contextlib.suppress(ImportError):
            return RichProgress()
    return PlainProgress()


def render_summary(report: SendReport) -> str:
    """The closing summary for humans (the JSON summary has the same numbers and the ids)."""
    s = report.summary()
    exp = s["expected"]
    reasons = Counter(exp["incomplete_sessions"].values())
    lat = s["latency_ms"]

    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f} ms"

    statuses = ", ".join(f"{k}: {v}" for k, v in s["status_counts"].items()) or "none"
    kinds = ", ".join(f"{k} {v}" for k, v in s["deliveries_by_kind"].items())
    rps = s["requests_per_second"]
    lines = [
        f"sessionflow send -> {report.url}",
        f"  deliveries  {s['deliveries']} ({kinds})",
        f"  sent        {s['requests']} requests in {s['elapsed_seconds']:.2f} s"
        + (f" ({rps:,.0f}/s)" if rps else ""),
        f"  status      {statuses}",
        f"  latency     p50 {ms(lat['p50'])}  p99 {ms(lat['p99'])}  max {ms(lat['max'])}",
        f"  retries     {s['retries']}",
        f"  failures    {s['failures']} events never got a 2xx",
        f"  expected    {exp['completed']} completed sessions, {exp['incomplete']} incomplete"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + ")"
            if reasons
            else ""
        )
        + f", {exp['planned_events']} planned-type events",
    ]
    return "\n".join(lines) + "\n"


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from exc
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {value}")
    return share


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {value!r}") from exc
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
        return number

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `send` subcommand's options."""
    parser.description = (
        "Post realistic, Svix-signed Agntix session webhooks to the producer: sessions with both "
        "halves and a full analysis block, plus exact retries, resends under a new message id, "
        "reordering, half-only sessions and planned event types. Non-2xx responses are retried "
        "with exponential backoff like Svix. Secrets come from SESSIONFLOW_WEBHOOK_SECRETS, else "
        "the development secret file that `make run` creates. Exits non-zero if any event never "
        "got a 2xx."
    )
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    add = parser.add_argument
    add("--sessions", type=_positive(int), required=True, help="number of sessions to simulate")
    add(
        "--rate",
        type=_positive(float),
        default=None,
        help="target requests/s (default: as fast as possible)",
    )
    add("--url", default=DEFAULT_URL, help="the webhook endpoint")
    add(
        "--concurrency",
        type=_positive(int),
        default=64,
        help="open connections / requests in flight",
    )
    add(
        "--seed",
        type=int,
        default=None,
        help="traffic seed (default: random); the same seed gives the same bodies",
    )
    add(
        "--retry-share",
        type=_share,
        default=0.05,
        help="share of deliveries sent twice with the same message id",
    )
    add(
        "--resend-share",
        type=_share,
        default=0.02,
        help="share of deliveries sent again under a new message id",
    )
    add(
        "--reorder-share",
        type=_share,
        default=0.1,
        help="share of complete sessions whose session.ended comes first",
    )
    add(
        "--half-only-share",
        type=_share,
        default=0.02,
        help="share of sessions that send only one half",
    )
    add("--planned-share", type=_share, default=0.05, help="planned-type events per session event")
    add(
        "--header-family",
        choices=[c.value for c in HeaderChoice],
        default=HeaderChoice.SVIX.value,
        help="svix-* or webhook-* signature headers, or a per-message mix",
    )
    add(
        "--max-attempts",
        type=_positive(int),
        default=8,
        help="attempts per delivery before giving up",
    )
    add(
        "--retry-base-seconds",
        type=_positive(float),
        default=0.5,
        help="first retry delay (doubles each attempt)",
    )
    add("--retry-cap-seconds", type=_positive(float), default=10.0, help="longest retry delay")
    add(
        "--timeout-seconds",
        type=_positive(float),
        default=DEFAULT_TIMEOUT_S,
        help="per-attempt timeout",
    )
    add(
        "--json-summary",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the summary (with ids) as JSON",
    )
    add("--no-progress", action="store_true", help="no live progress line")


def run(args: argparse.Namespace) -> int:
    """Build the plan, send it, print the summary; 0 only if every event got a 2xx."""
    try:
        secrets = devsecret.resolve_secrets()
    except devsecret.DevSecretError as exc:
        sys.stderr.write(f"sessionflow send: {exc}\n")
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    try:
        the_plan = traffic.plan(
            args.sessions,
            seed=seed,
            retry_share=args.retry_share,
            resend_share=args.resend_share,
            reorder_share=args.reorder_share,
            half_only_share=args.half_only_share,
            planned_share=args.planned_share,
            now=datetime.now(UTC),
        )
    except traffic.TrafficError as exc:
        sys.stderr.write(f"sessionflow send: {exc}\n")
        return 2
    progress = None if args.no_progress else _progress_sink()
    try:
        report = asyncio.run(
            deliver(
                the_plan,
                args.url,
                secrets,
                concurrency=args.concurrency,
                rate=args.rate,
                max_attempts=args.max_attempts,
                retry_base_s=args.retry_base_seconds,
                retry_cap_s=args.retry_cap_seconds,
                timeout_s=args.timeout_seconds,
                header_family=args.header_family,
                progress=progress,
            )
        )
    except SigningError as exc:
        sys.stderr.write(f"sessionflow send: {exc}\n")
        return 2
    finally:
        if progress is not None:
            progress.close()
    sys.stdout.write(render_summary(report))
    if args.json_summary is not None:
        args.json_summary.write_bytes(orjson.dumps(report.summary(), option=orjson.OPT_INDENT_2))
    return 0 if report.ok else 1
