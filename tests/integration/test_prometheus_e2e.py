"""A real Prometheus (Debian's package) scrapes a running producer and worker during real traffic."""

from __future__ import annotations

import os
import shutil
import signal
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.conftest import REPO, TIMEOUT_S
from tests.integration.cli_fixtures import Service, ServiceEnv, cli, wait_for
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
LOCAL_CONFIG = REPO / "deploy" / "prometheus" / "prometheus-local.yml"


@pytest.fixture
def prometheus_binary() -> str:
    if not Path(PROMETHEUS).is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{PROMETHEUS} is missing on CI: install Debian's prometheus package")
        pytest.skip(f"{PROMETHEUS} is missing: install Debian's prometheus package to run this")
    return PROMETHEUS


def scrape_config(producer_port: int, worker_port: int) -> dict[str, Any]:
    """The local run's config, pointed at this test's ports and scraping every second."""
    config: dict[str, Any] = yaml.safe_load(LOCAL_CONFIG.read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    ports = {"sessionflow-producer": producer_port, "sessionflow-worker": worker_port}
    # No enricher runs here (the Agntix API is not configured): its job is left out.
    config["scrape_configs"] = [
        job for job in config["scrape_configs"] if job["job_name"] != "sessionflow-enricher"
    ]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(ports), "the local config's jobs changed: update this test"
    for name, port in ports.items():
        jobs[name]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    return config


def query(port: int, promql: str) -> float | None:
    """An instant query's single value, None while it has no result."""
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body = orjson.loads(response.read())
    except OSError:
        return None
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_sees_every_completed_session(
    prometheus_binary: str, kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    env = ServiceEnv(bootstrap=kafka_bootstrap, namespace=f"t-{unique}.", root=tmp_path)
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    # The alert rules ride along: Prometheus must load them too.
    shutil.copy(LOCAL_CONFIG.parent / "rules.yml", prom_dir / "rules.yml")
    (prom_dir / "prometheus.yml").write_text(
        yaml.safe_dump(scrape_config(env.admin_port, env.worker_port))
    )
    prom_port = free_port()
    services: list[Service] = []
    try:
        producer = Service(cli("producer"), env.environ(), tmp_path / "producer.log")
        services.append(producer)
        worker = Service(cli("worker"), env.environ(), tmp_path / "worker.log")
        services.append(worker)
        prometheus = Service(
            [
                prometheus_binary,
                f"--config.file={prom_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={prom_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            dict(os.environ),
            tmp_path / "prometheus.log",
        )
        services.append(prometheus)
        producer.wait_ready(f"http://127.0.0.1:{env.admin_port}/readyz")
        worker.wait_ready(f"http://127.0.0.1:{env.worker_port}/readyz")
        prometheus.wait_ready(f"http://127.0.0.1:{prom_port}/-/ready")

        summary = env.send(40, "--seed", "11")
        expected = summary["expected"]["completed"]
        accepted = summary["status_counts"]["202"]
        assert expected > 0

        seen: dict[str, float | None] = {}

        def prometheus_agrees() -> bool:
            seen["completed"] = query(prom_port, "sum(sessionflow_sessions_completed_total)")
            seen["accepted"] = query(
                prom_port, 'sum(sessionflow_webhooks_total{outcome="accepted"})'
            )
            return seen == {"completed": expected, "accepted": accepted}

        try:
            wait_for(prometheus_agrees, "Prometheus's view of the counters", TIMEOUT_S)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: last seen {seen}, expected completed={expected} accepted={accepted}\n"
                f"{prometheus.log()[-2000:]}"
            ) from exc
        # Both targets are up: nothing above could be true otherwise, but say it plainly.
        assert query(prom_port, "sum(up)") == 2
    finally:
        for service in reversed(services):
            service.stop(signal.SIGTERM, timeout_s=20)
