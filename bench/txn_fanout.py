"""What an exactly-once commit costs by how many transactions carry it (issue 11's last lever).

The worker commits one transaction per partition (twelve per commit at B4's 12 partitions), since
aiokafka 0.14 has no KIP-447 (one transaction per worker, fenced by the group's generation).
This measures the lever before anyone builds it: the same records and offsets every 100 ms,
committed by twelve transactional producers at once (the worker's way, the baseline) or by one
producer whose transaction holds all twelve partitions, in alternating rounds against the local
broker. Producers are made as the worker makes them (`Producers`: acks=all, the early offsets
partition, the 20 ms transactional backoff). Per variant: the commit's duration (offsets sent to
the end of the transaction), how long a record waits from its send until a read_committed reader
has it, and the CPU of this process and of the broker per commit.

B4 runs two rounds of 8 s each (`e2e_commit_p99_ms_one_txn` and its ratio in latest.json).

    python -m bench.txn_fanout [seconds per round] [rounds]
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.proc import broker_pid, cpu_seconds
from bench.stats import latency_summary, ratio
from sessionflow.settings import KafkaSettings
from sessionflow.topics import TopicSpec, delete_topics, ensure_topics
from streams.runtime.producers import Producers

PARTITIONS = 12
INTERVAL_S = 0.1
# B4's 400 events/s: about 20 completed records and 20 changelog records every interval.
RECORDS_PER_INTERVAL = 20
RECORD = b"x" * 2048
# How long the reader may take to read the last commit's records.
READ_ALL_S = 30.0
# The first part of each round (producers' first transactions, fresh topics) is not measured:
# this long, and at least until the first commit ended (a broker just started took over 2 s).
WARMUP_S = 1.0


class _RetriedProduces(logging.Handler):
    """Counts the produce requests aiokafka's sender retried (it logs each at WARNING)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Got error produce response"):
            self.count += 1


class Fanout:
    """One variant: `transactions` transactional producers for the twelve partitions, each
    sending its partitions' records and committing their offsets."""

    def __init__(self, bootstrap: str, run: str, name: str, transactions: int) -> None:
        self.name = name
        self._owner = {p: p % transactions for p in range(PARTITIONS)}
        self._producers = Producers(
            bootstrap_servers=bootstrap,
            client_id=f"{run}-{name}",
            transactional_id=lambda slot: f"{run}-{name}-{slot}",
            group_id=f"{run}-{name}",
        )
        self._slots = sorted(set(self._owner.values()))

    async def open(self) -> None:
        await self._producers.open(self._slots)

    async def close(self) -> None:
        await self._producers.close()

    async def send(self, topic: str, partition: int, values: list[bytes]) -> None:
        slot = self._owner[partition]
        producer = self._producers._by_partition[slot]  # the slot's producer, any partition
        batch = producer.create_batch()
        for value in values:
            batch.append(key=None, value=value, timestamp=None, headers=[])
        await producer.send_batch(batch, topic, partition=partition)

    async def commit(self, offsets: dict[int, dict[TopicPartition, int]]) -> None:
        by_slot: dict[int, dict[TopicPartition, int]] = {}
        for partition, partition_offsets in offsets.items():
            by_slot.setdefault(self._owner[partition], {}).update(partition_offsets)
        await self._producers.commit(by_slot, begin=True)


class _Reader:
    """A read_committed reader of `topic` from its end: each record's wait from its send (the
    time in its value)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.waits: list[float] = []
        self.records = 0
        # Records sent before this time (time.time()) are read but not measured.
        self.measure_from = 0.0
        self._bootstrap, self._topic = bootstrap, topic
        self._expected: int | None = None
        self._enough = asyncio.Event()
        self._stop = asyncio.Event()

    async def run(self, started: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self._topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)
            started.set()
            while not self._stop.is_set():
                fetched = await consumer.getmany(timeout_ms=50)
                now = time.time()
                for records in fetched.values():
                    for record in records:
                        sent = float((record.value or b"")[:20])
                        self.records += 1
                        if sent >= self.measure_from:
                            self.waits.append(now - sent)
                self._check()
        finally:
            await consumer.stop()

    def _check(self) -> None:
        if self._expected is not None and self.records >= self._expected:
            self._enough.set()

    async def read(self, expected: int) -> None:
        """Wait until `expected` records were read, then stop."""
        self._expected = expected
        self._check()
        try:
            await asyncio.wait_for(self._enough.wait(), READ_ALL_S)
        finally:
            self._stop.set()


async def _round(
    bootstrap: str, fanout: Fanout, out: str, changelog: str, source: str, seconds: float
) -> dict[str, Any]:
    await fanout.open()
    reader = _Reader(bootstrap, out)
    started = asyncio.Event()
    reading = asyncio.create_task(reader.run(started))
    await asyncio.wait_for(started.wait(), READ_ALL_S)  # at the end before the first send
    commits: list[float] = []
    offset = 0
    reader.measure_from = time.time() + WARMUP_S
    measure_from = time.monotonic() + WARMUP_S
    retried = _RetriedProduces()
    logging.getLogger("aiokafka.producer.sender").addHandler(retried)
    broker = broker_pid()
    cpu0, broker0 = time.process_time(), cpu_seconds(broker) if broker else None
    deadline = measure_from + seconds
    try:
        while time.monotonic() < deadline:
            tick = time.monotonic()
            offset += 1
            for i in range(RECORDS_PER_INTERVAL):
                partition = (offset * RECORDS_PER_INTERVAL + i) % PARTITIONS
                stamped = f"{time.time():<20.6f}".encode() + RECORD
                await fanout.send(out, partition, [stamped])
                await fanout.send(changelog, partition, [RECORD])
            offsets = {p: {TopicPartition(source, p): offset} for p in range(PARTITIONS)}
            started_at = time.monotonic()
            await fanout.commit(offsets)
            ended_at = time.monotonic()
            if started_at >= measure_from:
                commits.append(ended_at - started_at)
            elif offset == 1 and ended_at > measure_from:  # the warm-up lasts the first commit
                late = ended_at - measure_from
                measure_from, deadline = ended_at, deadline + late
                reader.measure_from += late
            await asyncio.sleep(max(0.0, INTERVAL_S - (time.monotonic() - tick)))
        await reader.read(offset * RECORDS_PER_INTERVAL)
        cpu = time.process_time() - cpu0
        broker_cpu = None if broker0 is None else (cpu_seconds(broker or 0) or 0.0) - broker0
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await fanout.close()
        logging.getLogger("aiokafka.producer.sender").removeHandler(retried)
    return {
        "commits": len(commits),
        "records_sent": offset * RECORDS_PER_INTERVAL,
        "records_read": reader.records,
        "commit": latency_summary(commits),
        "send_to_read": latency_summary(reader.waits),
        "retried_produces": retried.count,
        # Over every commit of the round, warm-up included, until the last record was read.
        "cpu_ms_per_commit": round(1000 * cpu / offset, 2),
        "broker_cpu_ms_per_commit": None
        if broker_cpu is None
        else round(1000 * broker_cpu / offset, 2),
    }


def _median(rounds: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for one in rounds:
        value: Any = one
        for key in path:
            value = value[key]
        if value is not None:
            values.append(float(value))
    return round(statistics.median(values), 2) if values else None


async def measure(bootstrap: str, prefix: str, seconds: float, rounds: int) -> dict[str, Any]:
    """`rounds` alternating rounds of both variants, `seconds` each, on topics named `prefix`."""
    settings = KafkaSettings(kafka_bootstrap_servers=bootstrap)
    run = f"{prefix}txn-fanout"
    out, changelog, source = f"{run}.out", f"{run}.changelog", f"{run}.source"
    specs = [TopicSpec(name, PARTITIONS, 1, {}) for name in (out, changelog, source)]
    await ensure_topics(settings, specs)
    variants = {"per_partition": PARTITIONS, "one": 1}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    try:
        for r in range(rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                fanout = Fanout(bootstrap, f"{run}-r{r}", name, variants[name])
                one = await _round(bootstrap, fanout, out, changelog, source, seconds)
                results[name].append(one)
                print(f"round {r + 1} {name}: {orjson.dumps(one).decode()}", flush=True)
    finally:
        await delete_topics(bootstrap, lambda topic: topic.startswith(run))
    figures: dict[str, Any] = {}
    for name, got in results.items():
        for label, path in {
            "commit_p50_ms": ("commit", "p50_ms"),
            "commit_p99_ms": ("commit", "p99_ms"),
            "send_to_read_p50_ms": ("send_to_read", "p50_ms"),
            "send_to_read_p99_ms": ("send_to_read", "p99_ms"),
            "retried_produces": ("retried_produces",),
            "cpu_ms_per_commit": ("cpu_ms_per_commit",),
            "broker_cpu_ms_per_commit": ("broker_cpu_ms_per_commit",),
        }.items():
            figures[f"{label}_{name}"] = _median(got, *path)
    figures["commit_p99_ratio_one_to_per_partition"] = ratio(
        figures["commit_p99_ms_one"], figures["commit_p99_ms_per_partition"]
    )
    return {"rounds": results, "figures": figures}


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    # The sender's retried produces are counted (_RetriedProduces), not printed.
    logging.getLogger("aiokafka.producer.sender").setLevel(logging.WARNING)
    logging.getLogger("aiokafka.producer.sender").propagate = False
    args = sys.argv[1:]
    found = asyncio.run(
        measure(
            KafkaSettings().kafka_bootstrap_servers,
            f"bench-txn-{uuid.uuid4().hex[:8]}.",
            float(args[0]) if args else 10.0,
            int(args[1]) if len(args) > 1 else 4,
        )
    )
    print(orjson.dumps(found["figures"], option=orjson.OPT_INDENT_2).decode())
