"""Fixtures of the producer's unit tests: the app over an in-memory publisher."""

from __future__ import annotations

import pytest

from producer.app import ProducerApp, create_app
from producer.settings import ProducerSettings
from tests.unit.producer.asgi import (
    SECRET,
    FakePublisher,
)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def app(publisher: FakePublisher) -> ProducerApp:
    settings = ProducerSettings(
        webhook_secrets=SECRET, max_body_bytes=4096, body_timeout_seconds=0.2
    )
    return create_app(settings, publisher)
