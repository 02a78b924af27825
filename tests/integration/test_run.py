"""`sessionflow run` as a subprocess: banner, real traffic through it, Ctrl-C, a dying child."""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT_S
from tests.integration.cli_fixtures import Service, ServiceEnv, cli, pid_alive, wait_for

pytestmark = pytest.mark.integration

BANNER = "sessionflow is running"


@pytest.fixture
def env(kafka_bootstrap: str, unique: str, tmp_path: Path) -> ServiceEnv:
    return ServiceEnv(bootstrap=kafka_bootstrap, namespace=f"t-{unique}.", root=tmp_path)


def start_run(env: ServiceEnv) -> tuple[Service, dict[str, int]]:
    """`sessionflow run`, waited for until its banner; the children's pids from its log."""
    service = Service(cli("run"), env.environ(), env.root / "run.log")

    def banner_shown() -> bool:
        assert service.alive(), f"run exited early:\n{service.log()[-4000:]}"
        return BANNER in service.log()

    wait_for(banner_shown, "the run banner")
    pids = {
        name: int(pid)
        for name, pid in re.findall(r"(producer|worker) \(pid (\d+)\)", service.log())
    }
    assert set(pids) == {"producer", "worker"}, service.log()
    return service, pids


def test_run_serves_traffic_and_ctrl_c_stops_both_children(env: ServiceEnv) -> None:
    service, pids = start_run(env)
    try:
        log = service.log()
        assert f"{env.url}" in log
        assert f"http://127.0.0.1:{env.admin_port}/metrics" in log
        assert f"http://127.0.0.1:{env.worker_port}/metrics" in log
        assert "sessionflow send --sessions 1000" in log
        assert "sessionflow tail completed --from-beginning" in log

        summary = env.send(30, "--seed", "7")
        expected = set(summary["expected"]["complete_session_ids"])
        assert expected

        found: list[dict[str, object]] = []

        def all_completed() -> bool:
            found[:] = env.tail("completed")
            return len(found) >= len(expected)

        wait_for(all_completed, f"{len(expected)} completed sessions in `tail completed`")
        counts = Counter(str(r["sessionId"]) for r in found)
        assert set(counts) == expected
        assert max(counts.values()) == 1

        service.proc.send_signal(signal.SIGINT)
        assert service.proc.wait(timeout=TIMEOUT_S) == 0, service.log()[-4000:]
        assert not [name for name, pid in pids.items() if pid_alive(pid)]
        assert "stopped (producer exit 0, worker exit 0)" in service.log()
    finally:
        service.stop(signal.SIGKILL)
        for pid in pids.values():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_dying_child_stops_the_other_and_run_fails(env: ServiceEnv) -> None:
    service, pids = start_run(env)
    try:
        os.kill(pids["worker"], signal.SIGKILL)
        assert service.proc.wait(timeout=TIMEOUT_S) == 1, service.log()[-4000:]
        assert "worker (exit -9) stopped; stopping the rest" in service.log()
        wait_for(lambda: not pid_alive(pids["producer"]), "the producer gone")
    finally:
        service.stop(signal.SIGKILL)
        for pid in pids.values():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
