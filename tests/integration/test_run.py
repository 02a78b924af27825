"""`sessionflow run` as a subprocess: banner, real traffic through it, Ctrl-C, a dying child."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT_S
from tests.integration.cli_fixtures import ServiceEnv, pid_alive, running, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def env(kafka_bootstrap: str, unique: str, tmp_path: Path) -> ServiceEnv:
    return ServiceEnv(bootstrap=kafka_bootstrap, namespace=f"t-{unique}.", root=tmp_path)


def test_run_serves_traffic_and_ctrl_c_stops_both_children(env: ServiceEnv) -> None:
    with running(env, {"producer", "worker"}) as (service, pids):
        log = service.log()
        assert f"{env.url}" in log
        assert f"http://127.0.0.1:{env.admin_port}/metrics" in log
        assert f"http://127.0.0.1:{env.worker_port}/metrics" in log
        assert "sessionflow send --sessions 1000" in log
        assert "sessionflow tail completed --from-beginning" in log

        env.send_and_tail(30, 7, "completed")

        service.proc.send_signal(signal.SIGINT)
        assert service.proc.wait(timeout=TIMEOUT_S) == 0, service.log()[-4000:]
        assert not [name for name, pid in pids.items() if pid_alive(pid)]
        assert "stopped (producer exit 0, worker exit 0)" in service.log()


def test_a_dying_child_stops_the_other_and_run_fails(env: ServiceEnv) -> None:
    with running(env, {"producer", "worker"}) as (service, pids):
        os.kill(pids["worker"], signal.SIGKILL)
        assert service.proc.wait(timeout=TIMEOUT_S) == 1, service.log()[-4000:]
        assert "worker (exit -9) stopped; stopping the rest" in service.log()
        wait_for(lambda: not pid_alive(pids["producer"]), "the producer gone")
