"""Helpers for tests that run `sessionflow worker` as a real process against the broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from cli.traffic import Delivery, Mix, Plan, plan
from sessionflow.raw_record import partition_for_key
from sessionflow.topics import TopicSpec, ensure_topics
from streams.settings import WorkerSettings
from tests.conftest import TIMEOUT_S
from tests.integration.conftest import free_port, stop_process
from tests.kafka_helpers import Namespace, reader


@dataclass
class WorkerEnv(Namespace):
    """The settings every worker and helper of one test shares (one topic namespace)."""

    ttl_seconds: float = 600.0
    # The producers the reliability suite starts answer within 10 s (body + publish deadlines).
    grace_seconds: float = 10.0
    guarantee: str = "exactly_once"
    transaction_scope: str = WorkerSettings.model_fields["transaction_scope"].default
    extra: dict[str, str] = field(default_factory=dict)

    def environ(self, name: str, port: int) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SESSIONFLOW_TOPIC_NAMESPACE": self.namespace,
            "SESSIONFLOW_PARTITIONS": str(self.partitions),
            "SESSIONFLOW_SESSION_TTL_SECONDS": str(self.ttl_seconds),
            "SESSIONFLOW_EXPIRY_INTERVAL_SECONDS": "0.5",
            "SESSIONFLOW_EXPIRY_GRACE_SECONDS": str(self.grace_seconds),
            "SESSIONFLOW_PROCESSING_GUARANTEE": self.guarantee,
            "SESSIONFLOW_TRANSACTION_SCOPE": self.transaction_scope,
            # A worker started again under its name is the same worker (scope "worker": it aborts
            # the transaction it left open).
            "SESSIONFLOW_WORKER_ID": name,
            "SESSIONFLOW_DATA_DIR": str(self.root / name),
            "SESSIONFLOW_WORKER_HOST": "127.0.0.1",
            "SESSIONFLOW_WORKER_PORT": str(port),
            "SESSIONFLOW_LOG_LEVEL": "WARNING",
            **self.extra,
        }


class WorkerProcess:
    """One `sessionflow worker` subprocess with its own data dir, port and log file."""

    def __init__(self, env: WorkerEnv, name: str) -> None:
        self.env, self.name = env, name
        self.port = free_port()
        self.log_path = env.root / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker"],
            env=self.env.environ(self.name, self.port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def alive(self) -> bool:
        """Started and not exited."""
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout_s: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker {self.name} not ready in {timeout_s}s:\n{self.log_tail()}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return bytes(r.read()).decode()

    def total(self, sample_name: str) -> float:
        """A metric's samples called `sample_name` (a counter's `<name>_total`), summed."""
        return sum(
            sample.value
            for family in text_string_to_metric_families(self.metrics())
            for sample in family.samples
            if sample.name == sample_name
        )

    def dropped_transactions(self) -> dict[str, float]:
        """sessionflow_transactions_dropped_total by reason, from the worker's /metrics page."""
        return {
            sample.labels["reason"]: sample.value
            for family in text_string_to_metric_families(self.metrics())
            for sample in family.samples
            if sample.name == "sessionflow_transactions_dropped_total"
        }

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = TIMEOUT_S) -> int | None:
        return None if self.proc is None else stop_process(self.proc, sig, timeout_s)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


async def ensure_changelog(env: WorkerEnv, name: str) -> None:
    """The table's changelog topic as the worker declares it (compacted, one per partition)."""
    spec = TopicSpec(name, env.partitions, 1, {"cleanup.policy": "compact"})
    await ensure_topics(env.settings, [spec])


async def produce_table(env: WorkerEnv, changelog: str, states: dict[str, bytes]) -> None:
    """Write table values into its changelog, each on its session's partition."""
    producer = AIOKafkaProducer(bootstrap_servers=env.bootstrap, acks="all")
    await producer.start()
    try:
        for session_id, value in states.items():
            key = session_id.encode()
            partition = partition_for_key(key, env.partitions)
            await producer.send_and_wait(changelog, value, key=key, partition=partition)
    finally:
        await producer.stop()


async def produce_deliveries(bootstrap: str, topic: str, deliveries: Iterable[Delivery]) -> int:
    """Write deliveries to the raw topic as the producer does: key = session id, same headers."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    count = 0
    try:
        for d in deliveries:
            key = (d.session_id or d.message_id).encode()
            received = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
            headers = [
                ("message-id", d.message_id.encode()),
                ("event-type", d.event_type.encode()),
                ("received-at", received.encode()),
            ]
            await producer.send(topic, d.body, key=key, headers=headers)
            count += 1
        await producer.flush()
    finally:
        await producer.stop()
    return count


CHUNK = 20  # deliveries sent together, every CHUNK_EVERY_S: load keeps flowing through a fault
CHUNK_EVERY_S = 0.05


async def send_steadily(worker_env: WorkerEnv, deliveries: list[Delivery]) -> None:
    """`deliveries` to the raw topic CHUNK at a time, CHUNK_EVERY_S apart."""
    for i in range(0, len(deliveries), CHUNK):
        chunk = deliveries[i : i + CHUNK]
        await produce_deliveries(worker_env.bootstrap, worker_env.topics.raw, chunk)
        await asyncio.sleep(CHUNK_EVERY_S)


async def read_records(
    bootstrap: str, topic: str, *, until: int, settle_s: float = 3.0, timeout_s: float = TIMEOUT_S
) -> list[dict[str, object]]:
    """All records of a topic as a read_committed consumer sees them: wait for `until` of them,
    then keep reading `settle_s` more so that an extra (duplicate) record would show up."""
    found: list[dict[str, object]] = []
    async with reader(bootstrap, topic) as consumer:
        try:
            async with asyncio.timeout(timeout_s):
                while len(found) < until:
                    batches = await consumer.getmany(timeout_ms=500)
                    found += [orjson.loads(r.value) for recs in batches.values() for r in recs]
        except TimeoutError:
            return found
        settle_until = time.monotonic() + settle_s
        while time.monotonic() < settle_until:
            batches = await consumer.getmany(timeout_ms=300)
            found += [orjson.loads(r.value) for recs in batches.values() for r in recs]
        return found


def traffic(sessions: int, seed: int, half_only: float = 0.2) -> Plan:
    """A sender's deliveries of `sessions`: retries, resends, reordering, planned types."""
    return plan(
        sessions,
        seed=seed,
        now=datetime.now(UTC),
        mix=Mix(
            retry_share=0.3,
            resend_share=0.2,
            reorder_share=0.5,
            half_only_share=half_only,
            planned_share=0.1,
        ),
    )


def start(worker_env: WorkerEnv, workers: list[WorkerProcess], name: str) -> WorkerProcess:
    """Start worker `name` (its data dir and worker id) and add it to the test's `workers`."""
    worker = WorkerProcess(worker_env, name)
    workers.append(worker)
    worker.start()
    return worker


def assert_exactly_once(
    records: list[dict[str, object]], expected: frozenset[str] | set[str]
) -> None:
    """Every expected session has exactly one completed record, and no other session has one."""
    counts = Counter(str(r["sessionId"]) for r in records)
    doubled = {sid: n for sid, n in counts.items() if n > 1}
    assert not doubled, f"sessions emitted more than once: {doubled}"
    assert set(counts) == set(expected)


async def completed_once(worker_env: WorkerEnv, expected: frozenset[str] | set[str]) -> None:
    """Read the completed topic (read_committed) until every expected session is there, a while
    longer for late doubles, and assert each exactly once: the check after a fault."""
    completed = await read_records(
        worker_env.bootstrap,
        worker_env.topics.completed,
        until=len(expected),
        timeout_s=120,
        settle_s=5,
    )
    assert_exactly_once(completed, expected)
