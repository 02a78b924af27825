"""The launcher's life cycle on a private broker: up, twice, down, data kept, reset, and the
sweep of a broker whose starter is gone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sessionflow.settings import KafkaSettings
from sessionflow.topics import TopicSpec, ensure_topics, topic_names
from tests.conftest import exited_starter, load_launcher
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


async def test_up_down_up_keeps_data_and_leaves_no_process(tmp_path: Path) -> None:
    launcher = load_launcher()
    broker = launcher.Broker(home=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    try:
        broker.up()
        pid = broker.pid()
        assert pid is not None
        assert launcher.metadata_ready("127.0.0.1", broker.port)
        broker.up()  # a second up is harmless: same process
        assert broker.pid() == pid

        settings = KafkaSettings(kafka_bootstrap_servers=broker.bootstrap)
        await ensure_topics(settings, [TopicSpec("kept", 2, 1, {})])

        assert broker.down() is True
        assert broker.pid() is None
        assert not launcher._alive(pid)
        assert not launcher.metadata_ready("127.0.0.1", broker.port, timeout_s=0.2)
        assert broker.down() is False  # nothing left to stop

        broker.up()
        assert "kept" in await topic_names(broker.bootstrap)

        broker.reset()
        assert broker.pid() is None
        broker.up()
        assert "kept" not in await topic_names(broker.bootstrap)

        # Its starter is this process: not an orphan. Once the starter is gone (a test run
        # killed from outside), the sweep stops it.
        starter = broker.starter.read_text().split()
        assert starter == [str(os.getpid()), launcher._start_time(os.getpid())]
        assert launcher.kill_orphaned_brokers(tmp_path) == []
        broker.starter.write_text(exited_starter())
        pid = broker.pid()
        assert launcher.kill_orphaned_brokers(tmp_path) == [pid]
        assert broker.pid() is None
        assert not launcher.metadata_ready("127.0.0.1", broker.port, timeout_s=0.2)
    finally:
        broker.down()
