"""Real processes for the fault scenarios: a private broker, producers, workers, topic readers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from sessionflow import traffic
from sessionflow.delivery import SendReport, deliver
from sessionflow.signing import HeaderFamily, Signer
from tests.conftest import load_launcher
from tests.integration.conftest import free_port
from tests.integration.producer_fixtures import SECRET
from tests.integration.worker_fixtures import WorkerEnv, WorkerProcess

SCALE = os.environ.get("SESSIONFLOW_RELIABILITY_SCALE", "ci")
LONG = SCALE == "long"
# Every wait of a scenario has a deadline; this is the generous one for a whole recovery.
RECOVERY_S = 120.0
_PROMETHEUS_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def by_scale(ci: int, long: int) -> int:
    return long if LONG else ci


class PrivateBroker:
    """A broker of the scenario's own (own ports, own data dir) that it may kill and restart."""

    def __init__(self, home: Path) -> None:
        launcher = load_launcher()
        self.broker: Any = launcher.Broker(home=home, port=free_port(), controller_port=free_port())

    @property
    def bootstrap(self) -> str:
        return str(self.broker.bootstrap)

    @property
    def log_path(self) -> Path:
        return Path(self.broker.log)

    def pid(self) -> int | None:
        pid: int | None = self.broker.pid()
        return pid

    async def up(self) -> float:
        """Start it; the seconds until it answered a metadata request."""
        took: float = await asyncio.to_thread(self.broker.up)
        return took

    async def down(self) -> None:
        await asyncio.to_thread(self.broker.down)

    async def kill(self) -> None:
        await asyncio.to_thread(self.broker.kill)


class ProducerProcess:
    """One `sessionflow producer` subprocess with its own port and log file."""

    def __init__(self, env: WorkerEnv, name: str = "producer") -> None:
        self.env, self.name = env, name
        self.port = free_port()
        self.admin_port = free_port()
        self.log_path = env.root / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/agntix"

    def start(self) -> None:
        environ = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.env.bootstrap,
            "SESSIONFLOW_TOPIC_NAMESPACE": self.env.namespace,
            "SESSIONFLOW_PARTITIONS": str(self.env.partitions),
            "SESSIONFLOW_WEBHOOK_SECRETS": SECRET,
            "SESSIONFLOW_HTTP_HOST": "127.0.0.1",
            "SESSIONFLOW_HTTP_PORT": str(self.port),
            "SESSIONFLOW_ADMIN_HOST": "127.0.0.1",
            "SESSIONFLOW_ADMIN_PORT": str(self.admin_port),
            "SESSIONFLOW_BODY_TIMEOUT_SECONDS": "5",
            "SESSIONFLOW_PUBLISH_TIMEOUT_SECONDS": "5",
            "SESSIONFLOW_READINESS_INTERVAL_SECONDS": "0.5",
            "SESSIONFLOW_RETRY_AFTER_SECONDS": "1",
            "SESSIONFLOW_LOG_LEVEL": "INFO",
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sessionflow.cli", "producer"],
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def readyz(self) -> int | None:
        """The /readyz status on the admin port, or None when nothing answers."""
        url = f"http://127.0.0.1:{self.admin_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return None

    async def wait_ready(self, timeout_s: float = RECOVERY_S) -> float:
        started = time.monotonic()
        await until(lambda: self.alive_readyz() == 200, timeout_s, f"{self.name} ready")
        return time.monotonic() - started

    def alive_readyz(self) -> int | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{tail(self.log_path)}")
        return self.readyz()

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout_s: float = 30.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


async def until(check: Callable[[], Any], timeout_s: float, what: str) -> None:
    """Poll `check` (run off the loop) until it is truthy, or fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for: {what}")


@dataclass
class Stack:
    """Every process a scenario started, so that `close` stops all of them."""

    env: WorkerEnv
    broker: PrivateBroker | None = None
    producers: list[ProducerProcess] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)

    def producer(self, name: str = "producer") -> ProducerProcess:
        p = ProducerProcess(self.env, name)
        self.producers.append(p)
        p.start()
        return p

    def worker(self, name: str) -> WorkerProcess:
        w = WorkerProcess(self.env, name)
        self.workers.append(w)
        w.start()
        return w

    async def ready_workers(self, workers: Iterable[WorkerProcess], timeout_s: float) -> None:
        await asyncio.gather(*(asyncio.to_thread(w.wait_ready, timeout_s) for w in workers))

    def pids(self) -> list[int]:
        procs = [p.proc for p in self.producers] + [w.proc for w in self.workers]
        return [p.pid for p in procs if p is not None and p.poll() is None]

    def log_paths(self) -> list[Path]:
        paths = [p.log_path for p in self.producers] + [w.log_path for w in self.workers]
        if self.broker is not None:
            paths.append(self.broker.log_path)
        return paths

    def scrape_duplicates(self) -> int:
        """Duplicate halves dropped, summed over the live workers' /metrics."""
        total = 0.0
        for w in self.workers:
            if w.proc is None or w.proc.poll() is not None:
                continue
            try:
                text = w.metrics()
            except OSError:
                continue
            for name, _labels, value in parse_metrics(text):
                if name == "sessionflow_duplicates_total":
                    total += value
        return int(total)

    async def close(self) -> None:
        for w in self.workers:
            await asyncio.to_thread(w.stop, signal.SIGTERM, 30.0)
        for p in self.producers:
            await asyncio.to_thread(p.stop)
        if self.broker is not None:
            await self.broker.down()
        leftovers = self.pids()
        assert not leftovers, f"processes left running: {leftovers}"
        if self.broker is not None:
            assert self.broker.pid() is None, "the private broker is still running"


def parse_metrics(text: str) -> list[tuple[str, str, float]]:
    out = []
    for line in text.splitlines():
        m = _PROMETHEUS_LINE.match(line)
        if m:
            out.append((m.group(1), m.group(2) or "", float(m.group(3))))
    return out


# -- reading topics ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rec:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


async def read_all(bootstrap: str, topic: str, timeout_s: float = RECOVERY_S) -> list[Rec]:
    """Every committed record of a topic, up to its last stable offset now (read_committed)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[Rec] = []
    try:
        async with asyncio.timeout(timeout_s):
            parts = consumer.partitions_for_topic(topic)
            while not parts:
                await consumer._client.force_metadata_update()  # first use of the topic
                parts = consumer.partitions_for_topic(topic)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            # With read_committed, the end offsets are the last stable offsets.
            ends = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=300)
                for tp, recs in batches.items():
                    out += [
                        Rec(
                            tp.partition,
                            r.offset,
                            r.key,
                            r.value,
                            {k: bytes(v) for k, v in (r.headers or ())},
                        )
                        for r in recs
                    ]
    finally:
        await consumer.stop()
    return out


def session_ids(records: Iterable[Rec]) -> Counter[str]:
    return Counter(str(orjson.loads(r.value)["sessionId"]) for r in records)


@dataclass
class Expected:
    """What the topics must hold, from what the sender got a 2xx for (and what went in directly)."""

    delivered_ids: set[str] = field(default_factory=set)
    complete: set[str] = field(default_factory=set)
    incomplete: dict[str, str] = field(default_factory=dict)
    sent: int = 0
    accepted: int = 0

    def add(self, report: SendReport) -> None:
        complete, incomplete, _ = report.expected()
        self.delivered_ids |= report.delivered_message_ids
        self.sent += report.requests
        self.accepted += len(report.delivered)
        self.merge(complete, {k: str(v) for k, v in incomplete.items()})

    def merge(self, complete: set[str], incomplete: dict[str, str]) -> None:
        for sid, reason in incomplete.items():
            if sid in self.complete:
                continue
            held = self.incomplete.get(sid)
            if held is not None and held != reason:
                # One send delivered one half, another the other: a complete session.
                del self.incomplete[sid]
                self.complete.add(sid)
            else:
                self.incomplete[sid] = reason
        for sid in complete:
            self.complete.add(sid)
            self.incomplete.pop(sid, None)


@dataclass
class Outcome:
    raw: list[Rec]
    completed: list[Rec]
    incomplete: list[Rec]
    dlq: list[Rec]
    waited_s: float


async def wait_outputs(
    env: WorkerEnv, expected: Expected, timeout_s: float = RECOVERY_S, settle_s: float = 3.0
) -> Outcome:
    """Read the outputs until they hold as many sessions as expected (or the deadline), then once
    more after `settle_s` so that a late duplicate would show up."""
    topics = env.topics
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        completed = await read_all(env.bootstrap, topics.completed)
        incomplete = await read_all(env.bootstrap, topics.incomplete)
        if (
            len(completed) >= len(expected.complete) and len(incomplete) >= len(expected.incomplete)
        ) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    waited = time.monotonic() - started
    await asyncio.sleep(settle_s)
    return Outcome(
        raw=await read_all(env.bootstrap, topics.raw),
        completed=await read_all(env.bootstrap, topics.completed),
        incomplete=await read_all(env.bootstrap, topics.incomplete),
        dlq=await read_all(env.bootstrap, topics.dlq),
        waited_s=waited,
    )


def assert_invariants(outcome: Outcome, expected: Expected) -> dict[str, int]:
    """The four invariants of every scenario; returns the counts for the report."""
    _dump(outcome, expected)
    raw_ids = {r.headers.get("message-id", b"").decode() for r in outcome.raw}
    lost = expected.delivered_ids - raw_ids
    assert not lost, (
        f"{len(lost)} webhooks answered 2xx are missing from the raw topic: {sorted(lost)[:5]}"
    )
    completed = session_ids(outcome.completed)
    doubled = {s: n for s, n in completed.items() if n > 1}
    assert not doubled, f"sessions completed more than once: {doubled}"
    missing = expected.complete - set(completed)
    assert not missing, f"{len(missing)} complete sessions never completed: {sorted(missing)[:5]}"
    extra = set(completed) - expected.complete
    assert not extra, f"completed records for sessions not expected complete: {sorted(extra)[:5]}"
    incomplete = session_ids(outcome.incomplete)
    doubled = {s: n for s, n in incomplete.items() if n > 1}
    assert not doubled, f"sessions reported incomplete more than once: {doubled}"
    assert set(incomplete) == set(expected.incomplete), (
        f"incomplete mismatch: missing {sorted(set(expected.incomplete) - set(incomplete))[:5]}, "
        f"extra {sorted(set(incomplete) - set(expected.incomplete))[:5]}"
    )
    reasons = {
        str(orjson.loads(r.value)["sessionId"]): orjson.loads(r.value)["reason"]
        for r in outcome.incomplete
    }
    assert reasons == expected.incomplete
    return {
        "raw records": len(outcome.raw),
        "completed": len(completed),
        "incomplete": len(incomplete),
        "dlq": len(outcome.dlq),
    }


async def send_signed(
    url: str, plan: traffic.Plan, *, rate: float, max_attempts: int = 20, retry_cap_s: float = 1.0
) -> SendReport:
    """The scenarios' sender: signed with the test secret, retrying like Svix (scaled down)."""
    return await deliver(
        plan,
        url,
        [SECRET],
        concurrency=16,
        rate=rate,
        max_attempts=max_attempts,
        retry_base_s=0.2,
        retry_cap_s=retry_cap_s,
    )


def traffic_plan(sessions: int, seed: int, **shares: float) -> traffic.Plan:
    values = {
        "retry_share": 0.1,
        "resend_share": 0.05,
        "reorder_share": 0.3,
        "half_only_share": 0.05,
        "planned_share": 0.02,
    }
    values.update(shares)
    return traffic.plan(sessions, seed=seed, now=datetime.now(UTC), **values)


async def timed(coro: Awaitable[Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = await coro
    return result, time.monotonic() - started


def scenario(item: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Tag a test with the issue's item number; the report writer files its outcome under it."""

    def tag(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.scenario = item  # type: ignore[attr-defined]
        return fn

    return tag


def with_ttl(seconds: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a scenario's workers another TTL than the suite's (the stack fixtures read it)."""

    def tag(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.ttl_s = seconds  # type: ignore[attr-defined]
        return fn

    return tag


def runs_last(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a test that must see every other test's effects (the conftest moves it last)."""
    fn.runs_last = True  # type: ignore[attr-defined]
    return fn


def _dump(outcome: Outcome, expected: Expected) -> None:
    """Everything a failure needs for its diagnosis, as JSON lines (SESSIONFLOW_RELIABILITY_DUMP)."""
    target = os.environ.get("SESSIONFLOW_RELIABILITY_DUMP")
    if not target:
        return
    with open(target, "wb") as out:
        for name in ("raw", "completed", "incomplete", "dlq"):
            for r in getattr(outcome, name):
                out.write(
                    orjson.dumps(
                        {
                            "topic": name,
                            "p": r.partition,
                            "o": r.offset,
                            "key": (r.key or b"").decode(errors="replace"),
                            "h": {k: v.decode(errors="replace") for k, v in r.headers.items()},
                            "v": r.value.decode(errors="replace")[:300],
                        }
                    )
                    + b"\n"
                )
        out.write(
            orjson.dumps(
                {
                    "expected_complete": sorted(expected.complete),
                    "expected_incomplete": expected.incomplete,
                }
            )
            + b"\n"
        )


# -- a sender that remembers when each answer came ----------------------------------------


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


# -- what the processes wrote to their logs -----------------------------------------------

# A webhook secret, a signature value (`v1,` and base64 of 32 bytes) and an E.164 number.
LEAKS = {
    "webhook secret": re.compile(r"whsec_"),
    "signature value": re.compile(r"v1,[A-Za-z0-9+/]{40,}={0,2}"),
    "phone number": re.compile(r"(?<![\w+])\+[1-9]\d{7,14}\b"),
}


def scan_for_leaks(paths: Iterable[Path]) -> tuple[int, int, list[str]]:
    """(files, lines, findings): every line of the logs that shows a secret, signature or phone."""
    files = lines = 0
    findings: list[str] = []
    for path in paths:
        files += 1
        with path.open("rb") as f:
            for number, raw in enumerate(f, 1):
                lines += 1
                line = raw.decode("utf-8", errors="replace")
                for what, pattern in LEAKS.items():
                    if pattern.search(line):
                        findings.append(f"{path}:{number}: {what}: {line.strip()[:200]!r}")
    return files, lines, findings


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offset of each partition of `topic`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            await consumer._client.force_metadata_update()  # first use of the topic
            parts = consumer.partitions_for_topic(topic)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}
