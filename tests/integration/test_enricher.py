"""`sessionflow enricher` against the real broker and a real HTTP fake of the Agntix API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from enricher.service import run_until_stopped
from enricher.settings import EnricherSettings
from sessionflow.logs import Formatter
from sessionflow.settings import KafkaSettings
from sessionflow.topics import Topics, ensure_topics
from tests.conftest import REPO, TIMEOUT_S
from tests.integration.agntix_fake import (
    API_KEY,
    API_TOKEN,
    FakeAgntix,
    Reply,
    fake_api,
    message,
    new_session_id,
    transcript,
)
from tests.integration.cli_fixtures import Service, ServiceEnv, cli, pid_alive, wait_for
from tests.integration.conftest import free_port
from tests.integration.worker_fixtures import read_records

pytestmark = pytest.mark.integration

SCHEMA = json.loads((REPO / "schemas" / "session-transcript.v1.json").read_text())
VALIDATOR = jsonschema_rs.validator_for(SCHEMA)


@pytest.fixture
def fake() -> Iterator[FakeAgntix]:
    yield from fake_api()


@pytest.fixture
def token_fake() -> Iterator[FakeAgntix]:
    """A fake that accepts only a Bearer token."""
    yield from fake_api(api_key=None, token=API_TOKEN)


def settings_for(
    bootstrap: str, unique: str, fake: FakeAgntix, **overrides: Any
) -> EnricherSettings:
    values: dict[str, Any] = {
        "AGNTIX_API_URL": fake.url,
        "AGNTIX_API_KEY": API_KEY,
        "kafka_bootstrap_servers": bootstrap,
        "topic_namespace": f"t-{unique}.",
        "partitions": 2,
        "enricher_host": "127.0.0.1",
        "enricher_port": free_port(),
        "enricher_concurrency": 4,
        "enricher_rate_per_second": 500,
        "enricher_request_timeout_seconds": 0.5,
        "enricher_session_deadline_seconds": 8,
        "enricher_max_attempts": 4,
        "enricher_backoff_initial_seconds": 0.05,
        "enricher_backoff_max_seconds": 0.2,
        "enricher_auth_retry_seconds": 0.5,
        "enricher_commit_interval_seconds": 0.2,
        "max_transcript_bytes": 256 * 1024,
        "log_level": "DEBUG",
    }
    values.update(overrides)
    return EnricherSettings(**values)


def topics_of(settings: KafkaSettings) -> Topics:
    return Topics.for_settings(settings)


async def produce_completed(settings: EnricherSettings, session_ids: list[str]) -> None:
    """Completed records as the worker writes them: key and sessionId = the session id."""
    topics = topics_of(settings)
    await ensure_topics(settings, topics.specs(settings))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for sid in session_ids:
            value = orjson.dumps({"schemaVersion": 1, "sessionId": sid, "type": "CHAT"})
            await producer.send(topics.completed, value, key=sid.encode())
        await producer.flush()
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def enricher(settings: EnricherSettings) -> AsyncIterator[None]:
    """`run_until_stopped` in this event loop, stopped (SIGTERM's path) at the end."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(settings, stop))
    try:

        async def up() -> bool:
            return task.done() or await ready(settings) is not None

        await wait_until(up, "the enricher up")
        if task.done():
            task.result()
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT_S)


async def ready(settings: EnricherSettings) -> int | None:
    """The /readyz status code, None while nothing answers (asked off the event loop)."""
    return await asyncio.to_thread(_ready, settings)


def _ready(settings: EnricherSettings) -> int | None:
    url = f"http://127.0.0.1:{settings.enricher_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


async def scrape(settings: EnricherSettings) -> dict[str, float]:
    """The enricher's /metrics as {series: value}, asked off the event loop."""
    return await asyncio.to_thread(_scrape, settings)


def _scrape(settings: EnricherSettings) -> dict[str, float]:
    url = f"http://127.0.0.1:{settings.enricher_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = bytes(response.read()).decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def wait_until(
    condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


async def transcripts(
    settings: EnricherSettings, until: int, settle_s: float = 1.5
) -> dict[str, dict[str, Any]]:
    """Every transcript record by session id; fails on a session written twice."""
    records = await read_records(
        settings.kafka_bootstrap_servers,
        topics_of(settings).transcripts,
        until=until,
        settle_s=settle_s,
    )
    counts = Counter(str(r["sessionId"]) for r in records)
    assert max(counts.values(), default=1) == 1, counts
    for record in records:
        errors = [e.message for e in VALIDATOR.iter_errors(record)]
        assert not errors, (record, errors)
    return {str(r["sessionId"]): r for r in records}


def spawn_enricher(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`sessionflow enricher` as operators run it, its log appended to a file."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "enricher"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


# -- the API's answers ------------------------------------------------------------------------


async def test_pages_retries_and_failures_become_one_valid_record_each(
    kafka_bootstrap: str, unique: str, fake: FakeAgntix, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(kafka_bootstrap, unique, fake)
    s = {
        name: new_session_id()
        for name in (
            "pages",
            "data",
            "items",
            "not_found",
            "flaky",
            "throttled",
            "down",
            "slow",
            "dropped",
            "big",
            "chunked",
            "bad_request",
            "not_json",
            "plain",
        )
    }
    # Three pages with a cursor, out of time order across pages; unknown fields, a tool call
    # with empty content and an integer beyond 64 bits must survive verbatim.
    tool = message(
        5,
        at="2025-01-01T10:00:01.500Z",
        role="TOOL",
        content="",
        toolName="crm",
        toolCallId=2**70,
        extra={"nested": [1, 2]},
    )
    fake.script(
        s["pages"],
        Reply(body={"messages": [message(1, at="2025-01-01T10:00:03Z")], "nextCursor": "c1"}),
        Reply(body={"messages": [tool, message(2, at="2025-01-01T10:00:00Z")], "nextCursor": "c2"}),
        Reply(body={"messages": [message(3, at="2025-01-01T10:00:02Z")], "nextCursor": None}),
    )
    fake.script(
        s["data"],
        Reply(body={"data": transcript(2), "next_cursor": "p2"}),
        Reply(body={"data": [message(9, at="2025-01-01T10:01:00Z")], "next_cursor": ""}),
    )
    fake.script(
        s["items"],
        Reply(
            body={
                "items": [message(1)],
                "next": f"/api/v1/chat/sessions/{s['items']}/messages?cursor=L2",
            }
        ),
        Reply(body={"items": [message(2)]}),
    )
    fake.script(s["not_found"], Reply(status=404, body={"error": "no such session"}))
    fake.script(s["flaky"], Reply(status=500), Reply(status=502), Reply(body=transcript(2)))
    fake.script(
        s["throttled"], Reply(status=429, headers={"Retry-After": "1"}), Reply(body=transcript(1))
    )
    fake.script(s["down"], Reply(status=503))
    fake.script(s["slow"], Reply(body=transcript(1), delay_s=2.0), Reply(body=transcript(1)))
    fake.script(s["dropped"], Reply(drop=True), Reply(body=transcript(2)))
    fake.script(s["big"], Reply(body=b"[" + b" " * (300 * 1024) + b"]"))
    fake.script(s["chunked"], Reply(chunked_bytes=300 * 1024))
    fake.script(s["bad_request"], Reply(status=400))
    fake.script(s["not_json"], Reply(body=b"<html>oops</html>"))

    with caplog.at_level(logging.DEBUG):
        await produce_completed(settings, list(s.values()))
        async with enricher(settings):
            found = await transcripts(settings, until=len(s))
            metrics = await scrape(settings)

    assert set(found) == set(s.values())
    by = {name: found[sid] for name, sid in s.items()}

    pages = by["pages"]
    assert (pages["status"], pages["pages"], pages["attempts"], pages["httpStatus"]) == (
        "ok",
        3,
        3,
        200,
    ), (pages, fake.requests_for(s["pages"]))
    assert [m["id"] for m in pages["messages"]] == ["msg_0002", "msg_0005", "msg_0003", "msg_0001"]
    assert pages["messages"][1] == tool  # verbatim: empty content, tool fields, big integer
    assert pages["messageCount"] == 4
    assert [r.cursor for r in fake.requests_for(s["pages"])] == [None, "c1", "c2"]
    assert by["data"]["messageCount"] == 3
    assert [r.cursor for r in fake.requests_for(s["items"])] == [None, "L2"]
    assert by["items"]["messageCount"] == 2

    assert (by["not_found"]["status"], by["not_found"]["httpStatus"]) == ("not_found", 404)
    assert by["not_found"]["attempts"] == 1
    assert by["not_found"]["messages"] is None
    assert (by["flaky"]["status"], by["flaky"]["attempts"]) == ("ok", 3)
    assert (by["throttled"]["status"], by["throttled"]["attempts"]) == ("ok", 2)
    first, second = fake.requests_for(s["throttled"])
    assert second.at - first.at >= 1.0, "Retry-After: 1 was not honoured"
    # The 429 holds back every session's requests, not just its own (one client, one limit).
    held = [r for r in fake.seen if first.at + 0.1 < r.at < first.at + 0.95]
    assert held == [], held
    assert any(r.at >= first.at + 1.0 for r in fake.seen if r.session_id != s["throttled"])
    down = by["down"]
    assert (down["status"], down["httpStatus"], down["error"]) == ("failed", 503, "http_status")
    assert down["attempts"] == settings.enricher_max_attempts == len(fake.requests_for(s["down"]))
    assert (by["slow"]["status"], by["slow"]["attempts"]) == ("ok", 2)
    assert (by["dropped"]["status"], by["dropped"]["attempts"]) == ("ok", 2)
    for name in ("big", "chunked"):
        assert (by[name]["status"], by[name]["error"], by[name]["attempts"]) == (
            "failed",
            "too_large",
            1,
        )
    assert (
        by["bad_request"]["error"],
        by["bad_request"]["httpStatus"],
        by["bad_request"]["attempts"],
    ) == (
        "http_status",
        400,
        1,
    )
    assert by["not_json"]["error"] == "invalid_body"
    assert by["plain"]["messageCount"] == 3

    # Every request carried the key, and nothing logged it (DEBUG, every library's logger).
    assert {r.api_key for r in fake.seen} == {API_KEY}
    formatter = Formatter("json")
    logged = "\n".join(formatter.format(r) for r in caplog.records)
    assert "transcript written" in logged
    assert API_KEY not in logged
    assert API_KEY[8:] not in logged

    assert (
        metrics['sessionflow_transcript_fetches_total{http_status="404",outcome="not_found"}'] == 1
    )
    assert metrics['sessionflow_transcript_fetches_total{http_status="503",outcome="failed"}'] == 1
    assert metrics['sessionflow_transcript_failures_total{reason="too_large"}'] == 2
    assert metrics['sessionflow_transcript_retries_total{reason="429"}'] == 1
    assert metrics['sessionflow_transcript_retries_total{reason="5xx"}'] == 2 + 3
    assert metrics['sessionflow_transcript_retries_total{reason="timeout"}'] == 1
    assert metrics['sessionflow_transcript_retries_total{reason="connection_error"}'] == 1
    assert metrics["sessionflow_transcript_fetch_seconds_count"] == len(s)
    assert metrics['sessionflow_transcript_requests_total{http_status="timeout"}'] == 1


async def test_the_rate_limit_spaces_requests(
    kafka_bootstrap: str, unique: str, fake: FakeAgntix
) -> None:
    rate = 20.0
    settings = settings_for(
        kafka_bootstrap, unique, fake, enricher_rate_per_second=rate, enricher_concurrency=8
    )
    sessions = [new_session_id() for _ in range(30)]
    await produce_completed(settings, sessions)
    async with enricher(settings):
        await transcripts(settings, until=len(sessions), settle_s=0.5)
    arrivals = sorted(r.at for r in fake.seen)
    assert len(arrivals) == len(sessions)
    # Over any 5 consecutive requests at least 4 intervals pass (loopback jitter allowed).
    for i in range(len(arrivals) - 5):
        assert arrivals[i + 5] - arrivals[i] >= 5 / rate - 0.05, (i, arrivals[i : i + 6])
    assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 1) / rate - 0.05


async def test_concurrency_is_bounded_and_a_bearer_token_is_sent(
    kafka_bootstrap: str, unique: str, token_fake: FakeAgntix
) -> None:
    fake = token_fake
    settings = settings_for(
        kafka_bootstrap,
        unique,
        fake,
        AGNTIX_API_KEY=None,
        AGNTIX_API_TOKEN=API_TOKEN,
        enricher_concurrency=3,
    )
    sessions = [new_session_id() for _ in range(12)]
    for sid in sessions:
        fake.script(sid, Reply(body=transcript(2), delay_s=0.3))
    await produce_completed(settings, sessions)
    async with enricher(settings):
        found = await transcripts(settings, until=len(sessions), settle_s=0.5)

        async def caught_up() -> bool:
            lag = {k: v for k, v in (await scrape(settings)).items() if "consumer_lag" in k}
            return len(lag) == settings.partitions and sum(lag.values()) == 0

        await wait_until(caught_up, "lag 0 on every partition")
    assert {r["status"] for r in found.values()} == {"ok"}
    assert fake.peak == 3
    assert {r.authorization for r in fake.seen} == {f"Bearer {API_TOKEN}"}
    assert {r.api_key for r in fake.seen} == {None}


async def test_a_refused_credential_pauses_everything_and_skips_nothing(
    kafka_bootstrap: str, unique: str, fake: FakeAgntix, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(kafka_bootstrap, unique, fake)
    fake.refuse_auth = True
    sessions = [new_session_id() for _ in range(6)]
    await produce_completed(settings, sessions)
    with caplog.at_level(logging.INFO, "enricher"):
        async with enricher(settings):

            async def refused_twice() -> bool:
                found = await scrape(settings)
                return (
                    found.get('sessionflow_enricher_auth_failures_total{http_status="401"}', 0) >= 2
                )

            await wait_until(refused_twice, "two refusals (the first and a probe)")
            assert (await scrape(settings))["sessionflow_enricher_authorized"] == 0
            assert await ready(settings) == 503
            # While refused: few requests (probes only), and no transcript record at all.
            assert (
                await read_records(
                    settings.kafka_bootstrap_servers,
                    topics_of(settings).transcripts,
                    until=1,
                    timeout_s=1.5,
                )
                == []
            )
            # The sessions already in flight were refused once each; then one probe per interval.
            refused_for = time.monotonic() - fake.seen[0].at
            probes = refused_for / settings.enricher_auth_retry_seconds + 1
            assert fake.count() <= settings.enricher_concurrency + probes
            fake.refuse_auth = False
            found = await transcripts(settings, until=len(sessions))
            assert (await scrape(settings))["sessionflow_enricher_authorized"] == 1
            assert await ready(settings) == 200
    assert set(found) == set(sessions)
    assert {r["status"] for r in found.values()} == {"ok"}
    refusals = [r for r in caplog.records if "refuses the credential:" in r.getMessage()]
    assert len(refusals) == 1
    assert any("accepts the credential again" in r.getMessage() for r in caplog.records)


async def test_a_restart_fetches_nothing_again(
    kafka_bootstrap: str, unique: str, fake: FakeAgntix
) -> None:
    settings = settings_for(kafka_bootstrap, unique, fake)
    sessions = [new_session_id() for _ in range(10)]
    await produce_completed(settings, sessions)
    async with enricher(settings):
        await transcripts(settings, until=len(sessions), settle_s=0.5)
    assert fake.count() == len(sessions)
    later = [new_session_id() for _ in range(3)]
    await produce_completed(settings, later)
    async with enricher(settings):
        found = await transcripts(settings, until=len(sessions) + len(later))
    assert set(found) == set(sessions) | set(later)
    assert fake.count() == len(sessions) + len(later)


async def test_after_a_kill_the_written_sessions_are_not_fetched_again(
    kafka_bootstrap: str, unique: str, fake: FakeAgntix, tmp_path: Path
) -> None:
    # One partition: the first session hangs, so the committed position stays below it while
    # the sessions behind it are written. A kill -9 then leaves them written, not committed.
    settings = settings_for(
        kafka_bootstrap,
        unique,
        fake,
        partitions=1,
        enricher_session_deadline_seconds=60,
        enricher_request_timeout_seconds=30,
    )
    stuck, *behind = [new_session_id() for _ in range(6)]
    fake.script(stuck, Reply(body=transcript(1), delay_s=25.0))
    await produce_completed(settings, [stuck, *behind])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGNTIX_")},
        "AGNTIX_API_URL": fake.url,
        "AGNTIX_API_KEY": API_KEY,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SESSIONFLOW_TOPIC_NAMESPACE": settings.topic_namespace,
        "SESSIONFLOW_PARTITIONS": "1",
        "SESSIONFLOW_ENRICHER_HOST": "127.0.0.1",
        "SESSIONFLOW_ENRICHER_PORT": str(settings.enricher_port),
        "SESSIONFLOW_ENRICHER_COMMIT_INTERVAL_SECONDS": "0.2",
        "SESSIONFLOW_ENRICHER_REQUEST_TIMEOUT_SECONDS": "30",
        "SESSIONFLOW_ENRICHER_SESSION_DEADLINE_SECONDS": "60",
        "SESSIONFLOW_LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "enricher.log"
    first = spawn_enricher(env, log_path)
    try:
        records = await read_records(
            settings.kafka_bootstrap_servers,
            topics_of(settings).transcripts,
            until=len(behind),
            settle_s=0.6,
        )
        assert {r["sessionId"] for r in records} == set(behind), log_path.read_text()[-3000:]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=TIMEOUT_S)
    assert [len(fake.requests_for(sid)) for sid in behind] == [1] * len(behind)
    fake.script(stuck, Reply(body=transcript(1)))
    second = spawn_enricher(env, log_path)
    try:
        found = await transcripts(settings, until=len(behind) + 1)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=TIMEOUT_S) == 0, log_path.read_text()[-3000:]
    assert set(found) == {stuck, *behind}
    # The killed process's transcripts were read back: none of those sessions was fetched again.
    assert [len(fake.requests_for(sid)) for sid in behind] == [1] * len(behind)
    assert len(fake.requests_for(stuck)) == 2
    assert "read back transcripts written after the last commit" in log_path.read_text()


# -- end to end -------------------------------------------------------------------------------


def test_signed_webhooks_in_one_transcript_per_completed_session_out(
    kafka_bootstrap: str, unique: str, tmp_path: Path, fake: FakeAgntix
) -> None:
    """`sessionflow run` with the API configured: producer, worker and enricher as operators run them."""
    env = ServiceEnv(bootstrap=kafka_bootstrap, namespace=f"t-{unique}.", root=tmp_path)
    enricher_port = free_port()
    environ = env.environ(
        AGNTIX_API_URL=fake.url,
        AGNTIX_API_KEY=API_KEY,
        SESSIONFLOW_ENRICHER_HOST="127.0.0.1",
        SESSIONFLOW_ENRICHER_PORT=str(enricher_port),
    )
    service = Service(cli("run"), environ, tmp_path / "run.log")
    pids: dict[str, int] = {}
    try:
        wait_for(lambda: "sessionflow is running" in service.log(), "the run banner")
        pids = {
            name: int(pid)
            for name, pid in re.findall(r"(producer|worker|enricher) \(pid (\d+)\)", service.log())
        }
        assert set(pids) == {"producer", "worker", "enricher"}, service.log()
        assert f"http://127.0.0.1:{enricher_port}/metrics" in service.log()

        summary = env.send(20, "--seed", "11")
        expected = set(summary["expected"]["complete_session_ids"])
        assert expected
        found: list[dict[str, Any]] = []

        def all_enriched() -> bool:
            found[:] = env.tail("transcripts")
            return len(found) >= len(expected)

        wait_for(all_enriched, f"{len(expected)} transcripts in `tail transcripts`")
        counts = Counter(str(r["sessionId"]) for r in found)
        assert set(counts) == expected
        assert max(counts.values()) == 1
        for record in found:
            assert VALIDATOR.is_valid(record), record
            assert (record["status"], record["messageCount"]) == ("ok", fake.default_messages)
        assert {r.session_id for r in fake.seen} == expected
        assert {r.api_key for r in fake.seen} == {API_KEY}

        service.proc.send_signal(signal.SIGINT)
        assert service.proc.wait(timeout=TIMEOUT_S) == 0, service.log()[-4000:]
        assert "enricher exit 0" in service.log()
        assert API_KEY not in service.log()
    finally:
        service.stop(signal.SIGKILL)
        for pid in pids.values():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
