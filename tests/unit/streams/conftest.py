"""The processor's tests' fixtures: the processor, its metrics and the clock it reads."""

from __future__ import annotations

import pytest

from streams.metrics import WorkerMetrics
from streams.processor import SessionProcessor
from tests.unit.streams.processing import GRACE_MS, SETTLE_MS, TOPICS, TTL_MS


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    now = [1_700_000_000_000]
    monkeypatch.setattr("streams.processor.now_ms", lambda: now[0])
    return now


@pytest.fixture
def metrics() -> WorkerMetrics:
    return WorkerMetrics(max_intents=5)


@pytest.fixture
def processor(metrics: WorkerMetrics) -> SessionProcessor:
    return SessionProcessor(TOPICS, metrics, ttl_ms=TTL_MS, grace_ms=GRACE_MS, settle_ms=SETTLE_MS)
