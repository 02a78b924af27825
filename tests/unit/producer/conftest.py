"""Fixtures of the producer's unit tests: the app over an in-memory publisher."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from producer.app import ProducerApp, create_app
from producer.server import bind
from producer.settings import ProducerSettings
from tests.unit.producer.asgi import (
    SECRET,
    FakePublisher,
)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def app(publisher: FakePublisher) -> AsyncIterator[ProducerApp]:
    """The app, its public listener serving on a loopback port (as the lifespan would start it)."""
    settings = ProducerSettings(
        webhook_secrets=SECRET, max_body_bytes=4096, body_timeout_seconds=0.2
    )
    app = create_app(settings, publisher)
    await app.public.start(bind("127.0.0.1", 0))
    yield app
    await app.public.close()
