"""streams.runtime.compat: the worker refuses to run when a hooked library internal is gone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaClient, AIOKafkaProducer
from aiokafka.consumer.fetcher import Fetcher as AIOKafkaFetcher
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.producer.sender import Sender as AIOKafkaSender
from faust.stores.rocksdb import Store as RocksDBStore
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.app import create_app
from streams.metrics import WorkerMetrics
from streams.register import register
from streams.runtime import compat
from streams.settings import WorkerSettings


@contextlib.contextmanager
def _worker_app(tmp_path: Path, **settings: Any) -> Iterator[Any]:
    loop = asyncio.new_event_loop()  # the app's services are built on it; closed afterwards
    asyncio.set_event_loop(loop)
    worker_settings = WorkerSettings(
        table_store="memory", data_dir=tmp_path, topic_namespace="unit.", **settings
    )
    worker_app = create_app(worker_settings)
    register(worker_app, worker_settings, WorkerMetrics(max_intents=5))
    try:
        yield worker_app
    finally:
        # The check built the consumer, and with it the thread that would run aiokafka on a
        # loop of its own; the worker never started, so that loop is closed here.
        thread = getattr(worker_app._consumer, "_thread", None)
        if thread is not None:
            thread.thread_loop.close()
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    with _worker_app(tmp_path) as worker_app:
        yield worker_app


@pytest.fixture
def worker_scope_app(tmp_path: Path) -> Iterator[Any]:
    """Exactly-once in one transaction per worker (streams/runtime/worker_txn.py)."""
    with _worker_app(tmp_path, transaction_scope="worker") as worker_app:
        yield worker_app


@pytest.fixture
def partition_scope_app(tmp_path: Path) -> Iterator[Any]:
    """Exactly-once in one transaction per partition."""
    with _worker_app(tmp_path, transaction_scope="partition") as worker_app:
        yield worker_app


def test_every_requirement_holds_on_the_installed_libraries(app: Any) -> None:
    assert [r.what for r in compat.problems(app)] == []
    compat.check(app)


def test_the_installed_libraries_are_the_verified_ones() -> None:
    # pyproject.toml pins them; a different install is a deliberate override, and says so.
    assert compat.installed_versions() == compat.VERIFIED


@pytest.mark.parametrize(
    ("owner", "name", "named"),
    [
        (faust_consumer.Consumer, "perform_seek", "Consumer.perform_seek"),
        (faust_consumer.Consumer, "_drain_messages", "Consumer._drain_messages"),
        (faust_consumer.Consumer, "stop_flow", "stop_flow"),
        (faust_aiokafka.AIOKafkaConsumerThread, "_highwaters", "_highwaters"),
        (
            faust_aiokafka.AIOKafkaConsumerThread,
            "_create_worker_consumer",
            "_create_worker_consumer",
        ),
        (faust.App, "_new_transport", "App._new_transport"),
        (faust_aiokafka.Producer, "_new_producer", "Producer._new_producer"),
        (AIOKafkaFetcher, "fetched_records", "Fetcher.fetched_records"),
        (AIOKafkaProducer, "send_batch", "send_batch"),
        (AIOKafkaSender, "_find_coordinator", "_find_coordinator"),
        (AIOKafkaClient, "coordinator_lookup", "coordinator_lookup"),
        (RocksDBStore, "_db_for_partition", "_db_for_partition"),
    ],
)
def test_a_missing_hook_is_refused_with_the_versions_and_its_name(
    app: Any, monkeypatch: pytest.MonkeyPatch, owner: type[Any], name: str, named: str
) -> None:
    monkeypatch.delattr(owner, name)
    with pytest.raises(compat.IncompatibleLibraries) as refused:
        compat.check(app)
    message = str(refused.value)
    assert named in message
    assert "faust-streaming 0.15.3" in message
    assert "aiokafka 0.14.0" in message


def test_one_transaction_per_worker_finds_every_internal_it_hooks(worker_scope_app: Any) -> None:
    assert worker_scope_app.transaction_per_worker
    assert [r.what for r in compat.problems(worker_scope_app)] == []


@pytest.mark.parametrize(
    ("owner", "name"),
    [(AIOKafkaSender, "_do_txn_offset_commit"), (GroupCoordinator, "_do_fetch_commit_offsets")],
)
def test_the_hooks_of_one_transaction_per_worker_are_required_in_that_scope_only(
    partition_scope_app: Any,
    worker_scope_app: Any,
    monkeypatch: pytest.MonkeyPatch,
    owner: type[Any],
    name: str,
) -> None:
    monkeypatch.delattr(owner, name)
    assert compat.problems(partition_scope_app) == []
    with pytest.raises(compat.IncompatibleLibraries) as refused:
        compat.check(worker_scope_app)
    assert name in str(refused.value)


def test_a_changed_transactional_id_format_is_refused(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faust_consumer.TransactionManager, "transactional_id_format", "{group_id}")
    assert [r.what for r in compat.problems(app)] == [
        "faust TransactionManager.transactional_id_format '{group_id}-{tpg.group}-{tpg.partition}'"
        " and assignor.group_for_topic(topic)"
    ]


def test_the_worker_command_refuses_to_start(tmp_path: Path) -> None:
    script = (
        "import faust.transport.consumer as c\n"
        "del c.Consumer.perform_seek\n"
        "from cli.main import main\n"
        "raise SystemExit(main(['worker']))\n"
    )
    env = {
        **os.environ,
        # No broker anywhere: the refusal comes before the worker touches Kafka.
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "SESSIONFLOW_DATA_DIR": str(tmp_path),
        "SESSIONFLOW_TABLE_STORE": "memory",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "sessionflow worker: the worker cannot run on faust-streaming 0.15.3" in done.stderr
    assert "Consumer.perform_seek" in done.stderr


@pytest.mark.parametrize(
    ("guarantee", "transactional"), [("exactly_once", True), ("at_least_once", False)]
)
def test_the_guarantee_is_in_effect_whenever_it_is_read(
    tmp_path: Path, guarantee: str, transactional: bool
) -> None:
    # Faust's in_transaction is cached the first time it is read, false until the worker has
    # started: the start-up check, which builds the consumer, once turned exactly-once off.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    settings = WorkerSettings(
        table_store="memory",
        data_dir=tmp_path,
        processing_guarantee=guarantee,
    )
    worker_app: Any = create_app(settings)
    try:
        assert worker_app.in_transaction is transactional
        compat.check(worker_app)
        assert worker_app.consumer.in_transaction is transactional
        assert worker_app.in_transaction is transactional
    finally:
        worker_app.consumer._thread.thread_loop.close()
        asyncio.set_event_loop(None)
        loop.close()


def test_the_worker_consumer_fetches_with_the_configured_wait(app: Any) -> None:
    # Faust builds it with a fixed 1.5 s (streams/runtime/consumer.py, 8).
    thread = app.consumer._thread

    async def fetch_wait() -> int:
        consumer = thread._create_worker_consumer(app.transport)
        await consumer.stop()  # never started: nothing to close but the object
        wait: int = consumer._fetch_max_wait_ms
        return wait

    assert asyncio.get_event_loop().run_until_complete(fetch_wait()) == 20
    assert WorkerSettings().fetch_max_wait_ms == 20
