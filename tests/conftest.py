"""Shared fixtures: one real Kafka broker per test session, unique names per test."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
# One deadline for every wait on the broker or a process in the integration tests.
TIMEOUT_S = 60.0


def load_launcher() -> ModuleType:
    """The local broker launcher (deploy/kafka/broker.py), a stdlib script, as a module."""
    path = REPO / "deploy" / "kafka" / "broker.py"
    spec = importlib.util.spec_from_file_location("sessionflow_local_broker", path)
    assert spec is not None
    assert spec.loader is not None
    if spec.name in sys.modules:
        return sys.modules[spec.name]
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def http_status(url: str) -> int | None:
    """The status code of GET `url` (errors included), or None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The broker for this session: KAFKA_BOOTSTRAP_SERVERS, else Docker, else the local launcher.

    `make test` has started the local broker already; run alone, pytest starts it and stops
    it again at the end.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    if os.environ.get("SESSIONFLOW_TEST_DOCKER") == "1" and _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    launcher = load_launcher()
    broker = launcher.default_broker()
    started_here = broker.pid() is None
    broker.up()
    try:
        yield broker.bootstrap
    finally:
        if started_here:
            broker.down()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group and transactional-id names."""
    return uuid.uuid4().hex[:10]
