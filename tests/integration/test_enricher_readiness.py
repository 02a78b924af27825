"""An enricher cut off from the broker says so: /readyz and the age of its lag.

Its fetches only come back empty behind a network partition, like an idle enricher's, so it
reads its partitions' ends every commit interval: past SESSIONFLOW_ENRICHER_UNREACHABLE_SECONDS
without an answer it is not ready. The broker sits behind a proxy that holds every byte
(tests/integration/metadata_proxy.py).
"""

from __future__ import annotations

import time

import pytest

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
from tests.integration.readiness_probes import cut_off, read_after, readyz_says

pytestmark = pytest.mark.integration

UNREACHABLE_S = 2.0
ENDS_READ = "sessionflow_enricher_ends_read_timestamp_seconds"
LAG = "sessionflow_enricher_consumer_lag{"


async def test_an_enricher_cut_off_from_the_broker_is_not_ready_and_its_lag_ages(
    proxied_broker: MetadataProxy, unique: str, fake: FakeAgntix
) -> None:
    proxy = proxied_broker
    settings = settings_for(
        proxy.bootstrap, unique, fake, enricher_unreachable_seconds=UNREACHABLE_S
    )
    session_ids = [new_session_id() for _ in range(3)]
    await produce_completed(settings, session_ids)
    url = f"http://127.0.0.1:{settings.enricher_port}/readyz"

    async def ends_read_at() -> float:
        return (await scrape(settings)).get(ENDS_READ, 0.0)

    async with enricher(settings):
        await readyz_says(url, "ready", TIMEOUT_S)
        assert set(await transcripts(settings, until=len(session_ids))) == set(session_ids)
        await read_after(ends_read_at, time.time(), UNREACHABLE_S)
        lags = [v for k, v in (await scrape(settings)).items() if k.startswith(LAG)]
        assert lags, "no lag read"
        assert all(lag == 0 for lag in lags), lags

        held_at = await cut_off(proxy, url, UNREACHABLE_S)
        assert (await scrape(settings))[ENDS_READ] <= held_at

        proxy.release()
        await readyz_says(url, "ready", TIMEOUT_S)
        await read_after(ends_read_at, held_at, UNREACHABLE_S)
