"""An enricher cut off from the broker says so: /readyz and the age of its lag.

Its fetches only come back empty behind a network partition, like an idle enricher's, so it
reads its partitions' ends every commit interval: past SESSIONFLOW_ENRICHER_UNREACHABLE_SECONDS
without an answer it is not ready. The broker sits behind a proxy that holds every byte
(tests/integration/metadata_proxy.py).
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import orjson
import pytest

from enricher.settings import EnricherSettings
from tests.conftest import TIMEOUT_S
from tests.integration.agntix_fake import FakeAgntix, new_session_id
from tests.integration.enricher_fixtures import (
    enricher,
    produce_completed,
    scrape,
    settings_for,
    transcripts,
)
from tests.integration.metadata_proxy import MetadataProxy

pytestmark = pytest.mark.integration

UNREACHABLE_S = 2.0
ENDS_READ = "sessionflow_enricher_ends_read_timestamp_seconds"
LAG = "sessionflow_enricher_consumer_lag{"


def _readyz(settings: EnricherSettings) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{settings.enricher_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


async def answer_becomes(
    settings: EnricherSettings, status: str, within_s: float
) -> tuple[int, dict[str, object]]:
    deadline = time.monotonic() + within_s
    seen: list[tuple[int, dict[str, object]]] = []
    while time.monotonic() < deadline:
        answer = await asyncio.to_thread(_readyz, settings)
        if answer[1].get("status") == status:
            return answer
        if not seen or seen[-1] != answer:
            seen.append(answer)
        await asyncio.sleep(0.1)
    raise AssertionError(f"/readyz not {status!r} within {within_s} s; it said {seen}")


async def ends_read_after(settings: EnricherSettings, after: float, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while (read_at := (await scrape(settings)).get(ENDS_READ, 0.0)) <= after:
        assert time.monotonic() < deadline, f"ends last read at {read_at}, not after {after}"
        await asyncio.sleep(0.1)


async def test_an_enricher_cut_off_from_the_broker_is_not_ready_and_its_lag_ages(
    proxied_broker: MetadataProxy, unique: str, fake: FakeAgntix
) -> None:
    proxy = proxied_broker
    settings = settings_for(
        proxy.bootstrap, unique, fake, enricher_unreachable_seconds=UNREACHABLE_S
    )
    session_ids = [new_session_id() for _ in range(3)]
    await produce_completed(settings, session_ids)
    async with enricher(settings):
        await answer_becomes(settings, "ready", TIMEOUT_S)
        assert set(await transcripts(settings, until=len(session_ids))) == set(session_ids)
        await ends_read_after(settings, time.time(), within_s=UNREACHABLE_S)
        lags = [v for k, v in (await scrape(settings)).items() if k.startswith(LAG)]
        assert lags, "no lag read"
        assert all(lag == 0 for lag in lags), lags

        proxy.hold()
        held_at = time.time()
        status, body = await answer_becomes(settings, "unreachable", UNREACHABLE_S + 5)
        assert status == 503
        unanswered = body["unanswered_s"]
        assert isinstance(unanswered, int)
        assert unanswered >= UNREACHABLE_S
        assert (await scrape(settings))[ENDS_READ] <= held_at

        proxy.release()
        await answer_becomes(settings, "ready", TIMEOUT_S)
        await ends_read_after(settings, held_at, within_s=UNREACHABLE_S)
