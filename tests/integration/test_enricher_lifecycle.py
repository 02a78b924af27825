"""`sessionflow enricher` restarted and killed, and end to end behind `sessionflow run`."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT_S
from tests.integration.agntix_fake import (
    API_KEY,
    FakeAgntix,
    Reply,
    new_session_id,
    transcript,
)
from tests.integration.cli_fixtures import ServiceEnv, running
from tests.integration.conftest import free_port
from tests.integration.enricher_fixtures import (
    VALIDATOR,
    enricher,
    enricher_environ,
    produce_completed,
    settings_for,
    spawn_enricher,
    topics_of,
    transcripts,
)
from tests.integration.worker_fixtures import read_records

pytestmark = pytest.mark.integration


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
    env = enricher_environ(
        settings,
        fake.url,
        SESSIONFLOW_ENRICHER_COMMIT_INTERVAL_SECONDS="0.2",
        SESSIONFLOW_ENRICHER_REQUEST_TIMEOUT_SECONDS="30",
        SESSIONFLOW_ENRICHER_SESSION_DEADLINE_SECONDS="60",
        SESSIONFLOW_LOG_LEVEL="INFO",
    )
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
    extra = {
        "AGNTIX_API_URL": fake.url,
        "AGNTIX_API_KEY": API_KEY,
        "SESSIONFLOW_ENRICHER_HOST": "127.0.0.1",
        "SESSIONFLOW_ENRICHER_PORT": str(enricher_port),
    }
    with running(env, {"producer", "worker", "enricher"}, **extra) as (service, _):
        assert f"http://127.0.0.1:{enricher_port}/metrics" in service.log()

        expected, found = env.send_and_tail(20, 11, "transcripts")
        for record in found:
            assert VALIDATOR.is_valid(record), record
            assert (record["status"], record["messageCount"]) == ("ok", fake.default_messages)
        assert {r.session_id for r in fake.seen} == expected
        assert {r.api_key for r in fake.seen} == {API_KEY}

        service.proc.send_signal(signal.SIGINT)
        assert service.proc.wait(timeout=TIMEOUT_S) == 0, service.log()[-4000:]
        assert "enricher exit 0" in service.log()
        assert API_KEY not in service.log()
