"""Fixtures of the runtime's unit tests: the worker's own app, on an event loop of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from streams.app import create_app
from streams.metrics import WorkerMetrics
from streams.register import register
from streams.settings import WorkerSettings


@pytest.fixture
def worker_app() -> Iterator[Callable[[WorkerSettings], Any]]:
    """Makes the worker's app for some settings, registered; its event loop is closed after."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def make(settings: WorkerSettings) -> Any:
        app = create_app(settings)
        register(app, settings, WorkerMetrics(max_intents=5))
        return app

    try:
        yield make
    finally:
        asyncio.set_event_loop(None)
        loop.close()
