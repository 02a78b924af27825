"""Shared fixtures: one real Kafka broker per test session, unique names per test."""

from __future__ import annotations

import asyncio
import getpass
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiokafka.errors import KafkaError

from bench.proc import share_ports
from sessionflow.topics import delete_topics

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


def pytest_configure(config: pytest.Config) -> None:
    """An xdist worker picks its free ports in a lane of its own: the two streams of `make test`
    start processes side by side, and a port one stream picked may be bound only seconds later."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ... set by pytest-xdist
    if worker is not None:
        share_ports(int(worker.removeprefix("gw")), int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))


def exited_starter() -> str:
    """A broker's starter file as `Broker.up` writes it, naming a process that has exited."""
    launcher = load_launcher()
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = launcher._start_time(proc.pid)
    proc.wait()
    return f"{proc.pid} {started}\n"


def runs_temp_root(config: pytest.Config) -> Path:
    """Where pytest keeps the temporary folders of its runs, this one's and earlier ones': the
    `--basetemp` given, else `{temproot}/pytest-of-{user}` (pytest's documented rule)."""
    if config.option.basetemp:
        return Path(config.option.basetemp).resolve()
    temproot = os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()
    return Path(temproot).resolve() / f"pytest-of-{getpass.getuser()}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop the private brokers that an earlier run, killed from outside, left running: their
    homes are in pytest's temporary folders, and their starter is gone. Each holds a core's worth
    of threads, and they slowed a whole suite here from 13 to 20 minutes. Once per run: the
    controller sweeps, its xdist workers do not."""
    if hasattr(session.config, "workerinput"):
        return
    killed = load_launcher().kill_orphaned_brokers(runs_temp_root(session.config))
    if killed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        line = f"stopped {len(killed)} Kafka broker(s) left running by a killed test run: {killed}"
        if reporter is not None:
            reporter.write_line(line, yellow=True)


RELIABILITY_TESTS = "tests/reliability/"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test`'s two streams (`-n 2 --dist loadscope`): the reliability scenarios, which start
    brokers of their own, on one xdist worker, and every other test, on the shared broker, on the
    other; each stream in its order, as the whole suite ran in one process. Most of the scenarios'
    time is waiting (TTLs, timeouts, restarts), so the two overlap well on two cores.

    A scheduler, not `xdist_group` marks: pytest 9.2 reads a node's id from a structure of its own,
    and xdist 3.8's loadgroup, which appends the group to `item._nodeid`, no longer groups."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    if not callable(getattr(LoadScopeScheduling, "_split_scope", None)):
        # The override below would never be called, and the streams would mix on both workers.
        raise pytest.UsageError(
            "pytest-xdist's LoadScopeScheduling has no _split_scope (verified on 3.8): update"
            " tests/conftest.py, or run `make test PYTEST_STREAMS=`"
        )

    class Streams(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no type hints here
        def _split_scope(self, nodeid: str) -> str:
            return "reliability" if nodeid.startswith(RELIABILITY_TESTS) else "shared-broker"

    return Streams(config, log)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The broker for this session: KAFKA_BOOTSTRAP_SERVERS, else Docker, else the local launcher.

    `make test` has started the local broker already; run alone, pytest starts it and stops
    it again at the end.
    """
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        _delete_session_topics(external)
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
        _delete_session_topics(broker.bootstrap)
    finally:
        if started_here:
            broker.down()


# Every suffix `unique` gave out in this session: the topics named with one are deleted at its end.
_UNIQUES: set[str] = set()


def new_unique() -> str:
    """A short unique suffix for topic, group and transactional-id names, remembered so that the
    session's topics named with it are deleted at its end."""
    value = uuid.uuid4().hex[:10]
    _UNIQUES.add(value)
    return value


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group and transactional-id names."""
    return new_unique()


def _delete_session_topics(bootstrap: str) -> None:
    """Delete the topics this session named with a `unique` suffix, and no others (another
    session may share the broker). A developer's broker kept them all otherwise: about 1,500
    partitions after a day, which made the benchmarks run next measure a slower broker
    (bench/results/producer-experiments.md, section 8)."""
    if not _UNIQUES:
        return

    def ours(name: str) -> bool:
        return any(suffix in name for suffix in _UNIQUES)

    try:
        asyncio.run(asyncio.wait_for(delete_topics(bootstrap, ours), TIMEOUT_S))
    except (KafkaError, OSError, TimeoutError) as err:
        logging.getLogger(__name__).warning("could not delete this session's topics: %r", err)
