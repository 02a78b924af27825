"""Real processes for the fault scenarios: a private broker, producers, workers, and the
scenarios' tags and senders. What they read back is in outputs.py, the probe in probe.py."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli import traffic
from cli.delivery import SendReport, deliver
from sessionflow.events import SESSION_CREATED, SESSION_ENDED
from streams.settings import WorkerSettings
from tests.conftest import http_status, load_launcher
from tests.integration.conftest import free_port
from tests.integration.producer_fixtures import SECRET
from tests.integration.worker_fixtures import WorkerEnv, WorkerProcess
from tests.pausing import paused
from tests.polling import wait_until

SCALE = os.environ.get("SESSIONFLOW_RELIABILITY_SCALE", "ci")
LONG = SCALE == "long"
# What one exactly-once transaction of the workers covers (SESSIONFLOW_TRANSACTION_SCOPE).
TRANSACTION_SCOPE = os.environ.get(
    "SESSIONFLOW_RELIABILITY_TRANSACTION_SCOPE",
    WorkerSettings.model_fields["transaction_scope"].default,
)
# Every wait of a scenario has a deadline; this is the generous one for a whole recovery.
RECOVERY_S = 120.0
# The dedup/pairing TTL of the scenarios' workers. It must outlive the longest processing stall
# (a rebalance on this 2-core machine takes several seconds) plus the spread of a session's
# halves and retries: with 6 s, a stall let expiry ticks overtake second halves and let
# completion markers expire before late retries, which the run showed as "doubles". Production
# uses 48 h for the same reason (longer than the sender's retry horizon). A scenario whose plan
# spreads a session wider sets its own (`ttl_for`).
TTL_S = 30.0
# ttl_for's room: for a sender that falls behind its rate (which stretches every gap), and for
# the worker's lag behind the newest received-at.
_TTL_STRETCH = 1.5
_TTL_MARGIN_S = 10.0


def by_scale(ci: int, long: int) -> int:
    return long if LONG else ci


class PrivateBroker:
    """A broker of the scenario's own (own ports, own data dir) that it may kill and restart."""

    def __init__(self, home: Path, proxied: tuple[int, int] | None = None) -> None:
        """`proxied`: a second client listener's (port, advertised port), for a proxy in front."""
        launcher = load_launcher()
        self.broker: Any = launcher.Broker(
            home=home, port=free_port(), controller_port=free_port(), proxied=proxied
        )

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

    def frozen(self) -> AbstractAsyncContextManager[float]:
        """Stopped (SIGSTOP) for the body, every thread of it: the broker keeps its connections
        open and answers nothing (a long GC pause, a stalled VM), where a kill closes them and
        clients learn at once."""
        pid = self.pid()
        assert pid is not None, "the broker is not running"
        return paused(pid)


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
                [sys.executable, "-m", "cli", "producer"],
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def readyz(self) -> int | None:
        """The /readyz status on the admin port, or None when nothing answers."""
        return http_status(f"http://127.0.0.1:{self.admin_port}/readyz")

    async def wait_ready(self, timeout_s: float = RECOVERY_S) -> float:
        started = time.monotonic()
        await wait_until(lambda: self.alive_readyz() == 200, f"{self.name} ready", timeout_s)
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

    async def start(self, *workers: str) -> tuple[ProducerProcess, list[WorkerProcess]]:
        """The topics, one producer and these workers, all ready (the broker is up)."""
        await self.env.make_topics()
        producer = self.producer()
        started = [self.worker(name) for name in workers]
        await producer.wait_ready()
        await self.ready_workers(started, RECOVERY_S)
        return producer, started

    def plan_load(self, sessions: int, seed: int, rate: float, **shares: float) -> traffic.Plan:
        """A plan of `sessions` to be sent at `rate`, and the workers' TTL that holds its pairs
        together (`ttl_for`): call it before the workers start, which read the TTL once."""
        plan = traffic_plan(sessions, seed, **shares)
        self.env.ttl_seconds = ttl_for(plan, rate)
        return plan

    def keep_sending(
        self, producer: ProducerProcess, plan: traffic.Plan, rate: float
    ) -> asyncio.Task[SendReport]:
        """Send `plan` signed in the background, retrying long enough to outlast the scenario's
        faults (40 attempts, 2 s apart at the most); `outputs.settle` awaits it."""
        return asyncio.create_task(
            send_signed(producer.url, plan, rate=rate, max_attempts=40, retry_cap_s=2.0)
        )

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

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive()]

    def scrape_total(self, metric: str) -> int:
        """A counter's samples (`<name>_total`) summed over the live workers' /metrics."""
        total = 0.0
        for w in self.live_workers():
            try:
                total += w.total(metric)
            except OSError:
                continue
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


async def send_signed(
    url: str,
    plan: traffic.Plan,
    *,
    rate: float,
    max_attempts: int = 20,
    retry_cap_s: float = 1.0,
    concurrency: int = 16,
) -> SendReport:
    """The scenarios' sender: signed with the test secret, retrying like Svix (scaled down)."""
    return await deliver(
        plan,
        url,
        [SECRET],
        concurrency=concurrency,
        rate=rate,
        max_attempts=max_attempts,
        retry_base_s=0.2,
        retry_cap_s=retry_cap_s,
    )


# The scenarios' traffic, unless one says otherwise.
MIX = traffic.Mix(
    retry_share=0.1, resend_share=0.05, reorder_share=0.3, half_only_share=0.05, planned_share=0.02
)


def traffic_plan(sessions: int, seed: int, **shares: float) -> traffic.Plan:
    return traffic.plan(sessions, seed=seed, now=datetime.now(UTC), mix=replace(MIX, **shares))


def ttl_for(plan: traffic.Plan, rate: float) -> float:
    """A TTL that holds each session's halves and their copies together when `plan` is sent at
    `rate`: the suite's, unless a session's first and last delivery lie further apart.

    The plans spread an hour of sessions over the send; at the long scale a 30-minute call's
    halves are sent minutes apart, and with the suite's 30 s they expired apart (5 December).
    """
    first: dict[str, int] = {}
    widest = 0
    for i, d in enumerate(plan.deliveries):
        if d.session_id is None or d.event_type not in (SESSION_CREATED, SESSION_ENDED):
            continue  # planned types are stored, never paired
        widest = max(widest, i - first.setdefault(d.session_id, i))
    return max(TTL_S, float(round(_TTL_STRETCH * widest / rate + _TTL_MARGIN_S)))


async def timed(coro: Awaitable[Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = await coro
    return result, time.monotonic() - started


def scenario(
    item: str, *, ttl_s: float | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Tag a test with the issue's item number; the report writer files its outcome under it.

    `ttl_s` gives the scenario's workers another TTL than the suite's (the stack fixtures read it).
    """

    def tag(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.scenario = item  # type: ignore[attr-defined]
        if ttl_s is not None:
            fn.ttl_s = ttl_s  # type: ignore[attr-defined]
        return fn

    return tag


def runs_last(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a test that must see every other test's effects (the conftest moves it last)."""
    fn.runs_last = True  # type: ignore[attr-defined]
    return fn
