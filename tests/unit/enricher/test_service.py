"""enricher.service: every Kafka client of the enricher waits its retry backoff after a failed
metadata update (a broker outage spun a core, reliability scenario 16), and the enricher refuses
to run on an aiokafka where that would silently not apply."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaClient

from cli.main import main
from enricher.metrics import EnricherMetrics
from enricher.service import Enricher
from enricher.settings import EnricherSettings
from sessionflow.metadata_backoff import AiokafkaChanged, client_of


def _settings() -> EnricherSettings:
    return EnricherSettings(
        AGNTIX_API_URL="http://127.0.0.1:9",
        AGNTIX_API_KEY="pk_test_0123456789abcdef",
        kafka_bootstrap_servers="127.0.0.1:9",  # nothing listens: updates fail at once
        topic_namespace="unit.",
    )


async def test_a_failed_metadata_update_of_every_client_waits_the_retry_backoff() -> None:
    enricher = Enricher(_settings(), EnricherMetrics())
    try:
        kafka = (enricher.consumer, enricher.producer, enricher.reader, enricher.admin)
        for client in map(client_of, kafka):
            started = time.monotonic()
            assert await client._metadata_update(client.cluster, None) is False
            assert time.monotonic() - started >= client._retry_backoff == 0.1
    finally:
        await enricher.stop()


async def test_the_enricher_refuses_an_aiokafka_without_the_hooked_update(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(AIOKafkaClient, "_metadata_update")
    with pytest.raises(AiokafkaChanged, match=r"metadata_backoff\.py"):
        Enricher(_settings(), EnricherMetrics())


def test_the_command_refuses_to_start_on_such_an_aiokafka(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGNTIX_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AGNTIX_API_KEY", "pk_test_0123456789abcdef")
    monkeypatch.delenv("AGNTIX_API_TOKEN", raising=False)
    monkeypatch.delattr(AIOKafkaClient, "_metadata_update")
    assert main(["enricher"]) == 2
    err = capsys.readouterr().err
    assert "sessionflow enricher: refusing to start: aiokafka 0.14.0 no longer has" in err
