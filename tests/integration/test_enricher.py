"""`sessionflow enricher` against the real broker and a real HTTP fake of the Agntix API."""

from __future__ import annotations

import itertools
import logging
import time

import pytest

from enricher.ratelimit import RateLimiter
from sessionflow.logs import Formatter
from tests.integration.agntix_fake import (
    API_KEY,
    API_TOKEN,
    FakeAgntix,
    Reply,
    message,
    new_session_id,
    transcript,
)
from tests.integration.enricher_fixtures import (
    enricher,
    produce_completed,
    ready,
    scrape,
    settings_for,
    topics_of,
    transcripts,
)
from tests.integration.worker_fixtures import read_records
from tests.polling import wait_until

pytestmark = pytest.mark.integration


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
    kafka_bootstrap: str, unique: str, fake: FakeAgntix, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate = 20.0
    starts: list[float] = []
    acquire = RateLimiter.acquire

    async def timed(limiter: RateLimiter) -> float:
        waited = await acquire(limiter)
        starts.append(time.monotonic())
        return waited

    monkeypatch.setattr(RateLimiter, "acquire", timed)
    settings = settings_for(
        kafka_bootstrap, unique, fake, enricher_rate_per_second=rate, enricher_concurrency=8
    )
    sessions = [new_session_id() for _ in range(30)]
    await produce_completed(settings, sessions)
    async with enricher(settings):
        await transcripts(settings, until=len(sessions), settle_s=0.5)
    # The limiter starts one request per interval, never two closer (a stall of the event loop
    # once let starts planned ahead fall due together: 6 within 171 ms).
    assert len(starts) == len(sessions)
    for earlier, later in itertools.pairwise(starts):
        assert later - earlier >= 1 / rate - 0.001, (earlier, later)
    # What the API sees: never more than `rate` requests in a second, one more allowed for a
    # request the client sent late into the next one's slot (a clean-clone run saw two arrive
    # 0.3 ms apart, started 50 ms apart); all of them over at least their intervals.
    arrivals = sorted(r.at for r in fake.seen)
    assert len(arrivals) == len(sessions)
    for i, first in enumerate(arrivals):
        in_a_second = [a for a in arrivals[i:] if a - first < 1.0]
        assert len(in_a_second) <= rate + 1, (first, in_a_second)
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
