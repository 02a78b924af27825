"""A clean broker shutdown's last answer can leave librdkafka without any broker, for good.

The broker sits behind a proxy that plays that answer on demand (tests/integration/
metadata_proxy.py). Before the fix, a loop of this test's steps left the producer at 503, with
the broker back, after 5 of 8 such shutdowns; with it, 8 of 8 came back within 0.4 s, 7 of them
through a fresh client.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from sessionflow.topics import Topics
from tests.integration.metadata_proxy import MetadataProxy
from tests.integration.producer_fixtures import (
    consume,
    make_settings,
    post_signed,
    readyz_becomes,
    run_producer,
    valid_body,
)

pytestmark = pytest.mark.integration

# Each shutdown leaves the client without brokers about one time in two: four make a run in
# which none does (and the test would pass without the fix) about one in sixteen.
SHUTDOWNS = 4
FRESH_CLIENT_AFTER_S = 1.0


async def test_a_client_left_without_brokers_gives_way_to_a_fresh_one(
    proxied_broker: MetadataProxy,
) -> None:
    proxy = proxied_broker
    settings = make_settings(
        kafka_bootstrap_servers=proxy.bootstrap,
        readiness_interval_seconds=0.2,
        kafka_fresh_client_after_seconds=FRESH_CLIENT_AFTER_S,
    )
    stored: list[bytes] = []
    async with run_producer(settings) as producer, aiohttp.ClientSession() as http:

        async def accepted() -> None:
            body = valid_body()
            async with post_signed(http, producer.url, body) as resp:
                assert resp.status == 202
            stored.append(body)

        for _ in range(SHUTDOWNS):
            await accepted()
            proxy.fence()
            await proxy.fenced()
            await readyz_becomes(http, producer.admin_url, 503, within_s=5, poll_s=0.05)
            await asyncio.sleep(0.5)
            await proxy.restore()
            # A stuck client is given FRESH_CLIENT_AFTER_S, its successor up to 5 s to connect.
            await readyz_becomes(
                http, producer.admin_url, 200, within_s=FRESH_CLIENT_AFTER_S + 10, poll_s=0.05
            )
            await accepted()

        replaced = producer.app.publisher.clients_replaced
        async with http.get(f"{producer.admin_url}/metrics") as resp:
            exposition = await resp.text()
    assert replaced["fatal"] == 0
    line = 'sessionflow_producer_kafka_clients_replaced_total{reason="unreachable"}'
    assert f"{line} {float(replaced['unreachable'])}" in exposition.splitlines()
    records = await consume(settings, Topics.for_settings(settings).raw, len(stored))
    assert sorted(r.value for r in records) == sorted(stored), "every 2xx is in Kafka, once"
