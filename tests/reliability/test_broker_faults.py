"""Broker faults under signed traffic: kill -9 and restart, clean bounces, a late broker, a frozen
broker, and quiet logs while it is away (the producer's and worker's, and the enricher's)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from enricher.settings import EnricherSettings
from sessionflow.logs import FAULTS_LOGGER
from tests.conftest import TIMEOUT_S
from tests.integration.agntix_fake import fake_api, new_session_id
from tests.integration.enricher_fixtures import (
    completed_value,
    enricher_environ,
    produce_completed,
    settings_for,
    spawn_enricher,
    topics_of,
)
from tests.polling import wait_until
from tests.reliability.broker_load import (
    OUTAGE_TTL_S,
    probed_load,
    send,
    start_stack,
    start_under_load,
)
from tests.reliability.conftest import ReportBook
from tests.reliability.harness import (
    RECOVERY_S,
    Stack,
    by_scale,
    scenario,
)
from tests.reliability.outputs import (
    Expected,
    assert_invariants,
    outcome_rows,
    scan_for_leaks,
    settle,
    wait_outputs,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


@pytest.fixture
def stack(stack_with_broker: Stack) -> Stack:
    """Every scenario here faults the broker, so each stack has a broker of its own."""
    return stack_with_broker


@scenario("1", ttl_s=OUTAGE_TTL_S)
async def test_broker_kill_under_load(stack: Stack, report_book: ReportBook) -> None:
    # About 2.3 webhooks per session (both halves, retries, resends, planned events).
    sessions = by_scale(4400, 44_000)
    load = await probed_load(stack, sessions, seed=1, rate=by_scale(450, 1200))
    broker, producer, pids, probe = load.broker, load.producer, load.pids, load.probe

    await broker.kill()
    killed = time.monotonic()
    await wait_until(lambda: producer.alive_readyz() == 503, "producer readiness 503", 30)
    unready_s = time.monotonic() - killed
    await asyncio.sleep(by_scale(8, 20))
    restarting = time.monotonic()
    broker_up_s = await broker.up()
    ready_s = await producer.wait_ready()
    recovered_s = time.monotonic() - restarting

    report, probe_report, expected, outcome = await load.outputs(stack)
    during = probe.within(killed, restarting)
    report_book.record(
        "1",
        "Broker kill -9 under load, then restart",
        {
            "sessions planned (load), probe's planned-type events": f"{sessions}, {len(probe.plan.deliveries)}",
            "worker TTL (s)": OUTAGE_TTL_S,
            "webhooks sent (requests, incl. retries)": report.requests + probe_report.requests,
            "accepted (2xx, distinct deliveries)": expected.accepted,
            "load sender's statuses": dict(sorted(report.status_counts.items())),
            "probe's statuses inside the outage": dict(sorted(during.items())),
            "2xx inside the outage": sum(n for s, n in during.items() if s.startswith("2")),
            "broker down (s)": round(restarting - killed, 1),
            "producer readiness 503 after the kill (s)": round(unready_s, 1),
            "broker answering after restart (s)": round(broker_up_s, 1),
            "producer ready again after restart (s)": round(recovered_s, 1),
            "first 2xx after restart (s)": _round(probe.first_ok_after(restarting)),
            **outcome_rows(outcome, expected),
            "outputs complete after last 2xx (s)": round(outcome.waited_s, 1),
            "processes restarted": len(set(pids) - set(stack.pids())),
        },
        f"producer ready poll took {ready_s:.1f} s; the probe is a second sender that logs the "
        "time of every answer, so the outage window is measured, not inferred.",
    )
    assert during, "the probe made no attempt inside the outage"
    assert set(during) == {"503"}, f"answers while the broker was down: {during}"
    assert report.status_counts["503"] > 0, "the load sender never saw a 503"
    assert set(stack.pids()) == set(pids), "a process exited or was replaced"
    assert_invariants(outcome, expected)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# The sender's limit for an answer (Svix's timeout); a request held longer counts as failed.
SENDER_TIMEOUT_S = 15.0


@scenario("13", ttl_s=OUTAGE_TTL_S)
async def test_broker_frozen_under_load(stack: Stack, report_book: ReportBook) -> None:
    """SIGSTOP, not a kill: connections stay open and nothing is answered, longer than the
    workers' transaction timeout (10 s) and their session timeout, then SIGCONT."""
    sessions = by_scale(3000, 30_000)
    load = await probed_load(stack, sessions, seed=13, rate=by_scale(300, 1000))
    broker, producer, pids, probe = load.broker, load.producer, load.pids, load.probe

    async with broker.frozen() as stopping_s:
        frozen = time.monotonic()
        await wait_until(lambda: producer.alive_readyz() == 503, "producer readiness 503", 30)
        unready_s = time.monotonic() - frozen
        await asyncio.sleep(by_scale(20, 40) - unready_s)
    thawed = time.monotonic()
    ready_s = await producer.wait_ready()

    report, probe_report, expected, outcome = await load.outputs(stack)
    during = probe.within(frozen, thawed)
    held = [a.ended - a.started for a in probe.attempts if frozen <= a.started < thawed]
    report_book.record(
        "13",
        "Broker frozen (SIGSTOP) under load, then resumed",
        {
            "sessions planned (load), probe's planned-type events": f"{sessions}, {len(probe.plan.deliveries)}",
            "webhooks sent (requests, incl. retries)": report.requests + probe_report.requests,
            "accepted (2xx, distinct deliveries)": expected.accepted,
            "load sender's statuses": dict(sorted(report.status_counts.items())),
            "probe's statuses inside the freeze": dict(sorted(during.items())),
            "broker frozen (s)": round(thawed - frozen, 1),
            "SIGSTOP until the broker's last thread stopped (ms)": round(stopping_s * 1000, 1),
            "producer readiness 503 after the freeze (s)": round(unready_s, 1),
            "longest answer to a probe begun in the freeze (s)": round(max(held, default=0), 1),
            "producer ready after the thaw (s)": round(ready_s, 1),
            "first 2xx after the thaw (s)": _round(probe.first_ok_after(thawed)),
            **outcome_rows(outcome, expected),
            "outputs complete after last 2xx (s)": round(outcome.waited_s, 1),
            "worker transactions dropped (aborted by the broker meanwhile)": stack.scrape_total(
                "sessionflow_transactions_dropped_total"
            ),
            "processes restarted": len(set(pids) - set(stack.pids())),
        },
        "A frozen broker closes nothing, so no client learns of it from a connection: the "
        "producer's readiness probe and its publish deadline must.",
    )
    assert during, "the probe made no attempt inside the freeze"
    assert set(during) == {"503"}, f"answers while the broker was frozen: {during}"
    assert max(held) < SENDER_TIMEOUT_S, f"an answer took {max(held):.1f} s"
    assert set(stack.pids()) == set(pids), "a process exited or was replaced"
    assert_invariants(outcome, expected)


@scenario("2", ttl_s=OUTAGE_TTL_S)
async def test_clean_broker_bounces(stack: Stack, report_book: ReportBook) -> None:
    sessions = by_scale(1500, 20_000)
    broker, producer, pids, sending = await start_under_load(
        stack, sessions, seed=2, rate=by_scale(120, 500)
    )
    bounces: list[float] = []  # seconds from the broker's stop to the producer's readiness
    for _ in range(3):
        await asyncio.sleep(by_scale(3, 15))
        assert not sending.done(), "the traffic ended before the bounce: raise the count"
        stopping = time.monotonic()
        await broker.down()
        await broker.up()
        await producer.wait_ready()
        bounces.append(time.monotonic() - stopping)
    report, expected, outcome = await settle(stack.env, sending)
    report_book.record(
        "2",
        "Clean broker bounce, three times during processing",
        {
            "sessions planned": sessions,
            "worker TTL (s)": OUTAGE_TTL_S,
            "webhooks sent (requests, incl. retries)": report.requests,
            "accepted (2xx)": len(report.delivered),
            "sender's statuses": dict(sorted(report.status_counts.items())),
            "bounces: stop to producer ready again (s)": ", ".join(f"{b:.1f}" for b in bounces),
            **outcome_rows(outcome, expected),
            "outputs complete after last 2xx (s)": round(outcome.waited_s, 1),
            "processes restarted": len(set(pids) - set(stack.pids())),
        },
    )
    assert set(stack.pids()) == set(pids), "a process exited or was replaced"
    assert_invariants(outcome, expected)


@scenario("3")
async def test_start_with_the_broker_down(stack: Stack, report_book: ReportBook) -> None:
    assert stack.broker is not None
    # Producer and worker first: each creates the topics itself once the broker answers.
    producer = stack.producer()
    worker = stack.worker("w1")
    pids = stack.pids()
    late_s = by_scale(10, 60)
    deadline = time.monotonic() + late_s
    readiness: set[int | None] = set()
    while time.monotonic() < deadline:
        readiness.add(await asyncio.to_thread(producer.alive_readyz))
        assert worker.alive(), f"the worker exited:\n{worker.log_tail()}"
        await asyncio.sleep(0.5)
    assert 200 not in readiness, "the producer said ready with no broker"

    starting = time.monotonic()
    broker_up_s = await stack.broker.up()
    await producer.wait_ready()
    producer_ready_s = time.monotonic() - starting
    await stack.ready_workers([worker], RECOVERY_S)
    worker_ready_s = time.monotonic() - starting

    sessions = by_scale(500, 5000)
    report = await send(producer.url, sessions, seed=3, rate=by_scale(200, 500))
    assert report.ok, f"the sender gave up on {len(report.failed_message_ids)} webhooks"
    expected = Expected()
    expected.add(report)
    outcome = await wait_outputs(stack.env, expected)
    waited = (producer.log_path.read_text(errors="replace") + worker.log_tail(10_000)).count(
        "waiting for Kafka"
    )
    report_book.record(
        "3",
        "Start everything with the broker down, bring it up later",
        {
            "broker started after (s)": late_s,
            "producer /readyz while the broker was down": sorted(map(str, readiness)),
            "'waiting for Kafka' log lines (producer + worker)": waited,
            "broker answering after its start (s)": round(broker_up_s, 1),
            "producer ready after the broker's start (s)": round(producer_ready_s, 1),
            "worker ready after the broker's start (s)": round(worker_ready_s, 1),
            "sessions planned": sessions,
            "accepted (2xx)": len(report.delivered),
            **outcome_rows(outcome, expected),
            "processes restarted": len(set(pids) - set(stack.pids())),
        },
        "While the broker is down the producer waits before binding its port, so /readyz does "
        "not answer ('None') rather than answering 503.",
    )
    assert waited > 0, "neither process logged that it waited for Kafka"
    assert set(stack.pids()) == set(pids), "a process exited or was replaced"
    assert_invariants(outcome, expected)


# A 20 s outage, both processes idle: what they write and burn while the broker is away.
QUIET_OUTAGE_S = 20.0
MAX_LINES_IN_OUTAGE = 20  # per process: the first line of each kind, a summary each 10 s
MAX_CPU_SHARE_IN_OUTAGE = 0.10  # of one core, per process: reconnects back off, never spin
# The worker's expiry ticks every 20 ms in this scenario, so that a send of Faust's own producer is
# in flight when the broker goes: a batch refused as not leader for its partition, its sender
# then waiting for a leader (a tick per 0.5 s hit that window once in about ten runs, and the
# worker spun a core for the whole outage).
BUSY_TICK_S = "0.02"
LOG_FIELDS = ("ts", "level", "logger", "msg")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def json_lines(path: Path) -> list[dict[str, object]]:
    """Every line of a process's log, each one JSON object with the common fields."""
    docs = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"{path.name}:{number} is not JSON: {line[:200]!r}") from None
        assert isinstance(doc, dict), f"{path.name}:{number}: {line[:200]!r}"
        assert tuple(doc)[:4] == LOG_FIELDS, f"{path.name}:{number}: {line[:200]!r}"
        docs.append(doc)
    return docs


@scenario("12")
async def test_quiet_under_a_broker_outage(stack: Stack, report_book: ReportBook) -> None:
    stack.env.extra["SESSIONFLOW_EXPIRY_INTERVAL_SECONDS"] = BUSY_TICK_S
    broker, producer = await start_stack(stack)
    worker = stack.workers[0]
    await asyncio.sleep(2)  # past the start-up lines
    processes = {
        "producer": (producer.proc, producer.log_path),
        "worker": (worker.proc, worker.log_path),
    }
    before = {
        n: (len(json_lines(log)), cpu_seconds(p.pid)) for n, (p, log) in processes.items() if p
    }

    await broker.down()
    stopped = time.monotonic()
    await asyncio.sleep(QUIET_OUTAGE_S)
    during = {
        n: (len(json_lines(log)) - before[n][0], cpu_seconds(p.pid) - before[n][1])
        for n, (p, log) in processes.items()
        if p
    }
    outage_s = time.monotonic() - stopped
    await broker.up()
    await producer.wait_ready()
    await stack.ready_workers([worker], RECOVERY_S)
    # Each fault that repeated says once that it ended, after QUIET_S without a repeat.
    await wait_until(
        lambda: all(
            any(
                d["logger"] == FAULTS_LOGGER and "ended after" in str(d["msg"])
                for d in json_lines(log)
            )
            for _, log in processes.values()
        ),
        "a fault's end logged by each process",
        RECOVERY_S,
    )

    figures: dict[str, object] = {"broker stopped (s)": round(outage_s, 1)}
    for name, (lines, cpu_s) in during.items():
        figures[f"{name}: log lines during the outage"] = lines
        figures[f"{name}: CPU during the outage (s)"] = round(cpu_s, 2)
    report_book.record(
        "12",
        "Quiet under a 20 s broker outage (idle processes, JSON logs)",
        figures,
        f"Bounds: at most {MAX_LINES_IN_OUTAGE} lines and {MAX_CPU_SHARE_IN_OUTAGE:.0%} of a core "
        "per process while the broker is away. Before the fault gate, a real 20 s outage made the "
        "producer write 93,040 lines and the worker 3,186. The worker ticks every 20 ms here: a tick"
        " in flight as the broker stopped once spun its sender for the whole outage (20.4 s of CPU"
        " in 20 s), until Faust's own producer waited after a failed metadata update.",
    )
    for name, (lines, cpu_s) in during.items():
        assert lines <= MAX_LINES_IN_OUTAGE, f"{name} wrote {lines} lines in the outage"
        assert cpu_s <= MAX_CPU_SHARE_IN_OUTAGE * outage_s, f"{name} used {cpu_s:.1f}s of CPU"
    _, _, leaks = scan_for_leaks(log for _, log in processes.values())
    assert not leaks, leaks


# The enricher's completed sessions flow until the broker stops (a fetch and a send in flight).
ENRICHER_OUTAGE_S = 15.0
FEED_EVERY_S = 0.005


async def feed_completed(settings: EnricherSettings, stop: asyncio.Event) -> int:
    """Completed records, one every FEED_EVERY_S until `stop`; how many the broker took."""
    completed = topics_of(settings).completed
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", request_timeout_ms=2000
    )
    await producer.start()
    taken = 0
    try:
        while not stop.is_set():
            sid = new_session_id()
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(
                    producer.send_and_wait(completed, completed_value(sid), key=sid.encode()), 1.0
                )
                taken += 1
            await asyncio.sleep(FEED_EVERY_S)
    finally:
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(producer.stop(), 5.0)
    return taken


@scenario("16")
async def test_the_enricher_quiet_under_a_broker_outage(
    stack: Stack, report_book: ReportBook
) -> None:
    broker = stack.broker
    assert broker is not None
    await broker.up()
    log_path = stack.env.root / "enricher.log"
    with contextlib.contextmanager(fake_api)() as fake:
        settings = settings_for(broker.bootstrap, stack.env.namespace.strip("."), fake)
        await produce_completed(settings, [new_session_id()])  # its topics
        environ = enricher_environ(
            settings,
            fake.url,
            SESSIONFLOW_ENRICHER_RATE_PER_SECOND="1000",
            SESSIONFLOW_LOG_LEVEL="INFO",
        )
        enricher = spawn_enricher(environ, log_path)
        try:
            await wait_until(lambda: fake.count() >= 1, "the enricher fetching", RECOVERY_S)
            stop = asyncio.Event()
            feeding = asyncio.create_task(feed_completed(settings, stop))
            await asyncio.sleep(3)
            fetched = fake.count()
            await broker.down()  # a clean stop: transcripts are written until it is down
            lines, cpu_s = len(json_lines(log_path)), cpu_seconds(enricher.pid)
            stopped = time.monotonic()
            stop.set()
            fed = await feeding
            await asyncio.sleep(ENRICHER_OUTAGE_S - (time.monotonic() - stopped))
            lines = len(json_lines(log_path)) - lines
            cpu_s = cpu_seconds(enricher.pid) - cpu_s
            outage_s = time.monotonic() - stopped
            await broker.up()
            await wait_until(
                lambda: fake.count() > fetched, "the enricher fetching again", RECOVERY_S
            )
        finally:
            enricher.send_signal(signal.SIGTERM)
            stopped_rc = enricher.wait(timeout=TIMEOUT_S)

    report_book.record(
        "16",
        "The enricher quiet under a 15 s broker outage (its sessions flowing until it)",
        {
            "broker stopped (s)": round(outage_s, 1),
            "completed records fed before the outage": fed,
            "transcripts fetched before the outage": fetched,
            "enricher: log lines during the outage": lines,
            "enricher: CPU during the outage (s)": round(cpu_s, 2),
        },
        f"Bounds: at most {MAX_LINES_IN_OUTAGE} lines and {MAX_CPU_SHARE_IN_OUTAGE:.0%} of a core."
        " Before its Kafka clients waited after a failed metadata update"
        " (sessionflow/metadata_backoff.py), the enricher spun a core for the whole outage"
        " (15.1 s of CPU in 15 s, about 13,000 failed updates a second).",
    )
    assert stopped_rc == 0, log_path.read_text()[-3000:]
    assert lines <= MAX_LINES_IN_OUTAGE, f"the enricher wrote {lines} lines in the outage"
    assert cpu_s <= MAX_CPU_SHARE_IN_OUTAGE * outage_s, f"the enricher used {cpu_s:.1f}s of CPU"
    _, _, leaks = scan_for_leaks([log_path])
    assert not leaks, leaks
