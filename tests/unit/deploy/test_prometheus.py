"""deploy/prometheus: promtool accepts the configs and rules, the alerts fire, names match the code."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import metric_names
from producer.settings import ProducerSettings
from sessionflow.events import KNOWN_EVENT_TYPES
from streams.settings import WorkerSettings
from tests.unit.deploy._manifests import run_tool
from tests.unit.deploy._promql import PROMETHEUS_SERIES, known_labels, references

PROMETHEUS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
CONFIGS = ("prometheus.yml", "prometheus-local.yml")
JOBS = {"sessionflow-producer", "sessionflow-worker", "sessionflow-enricher"}
REQUIRED_ALERTS = {
    "SessionflowWebhookServerErrors",
    "SessionflowVerificationFailures",
    "SessionflowNoCompletedSessions",
    "SessionflowIncompleteSessionsRising",
    "SessionflowConsumerLagHigh",
    "SessionflowDeadLetters",
    "SessionflowTargetDown",
    "SessionflowTranscriptsFailing",
    "SessionflowEnricherUnauthorized",
    "SessionflowTranscriptLagHigh",
}
# Each metric's `outcome` label has its own values.
OUTCOMES = {
    "sessionflow_webhooks_total": metric_names.webhook_outcomes(),
    "sessionflow_transcript_fetches_total": metric_names.transcript_outcomes(),
}


def load(name: str) -> Any:
    return yaml.safe_load((PROMETHEUS_DIR / name).read_text())


def rules() -> list[dict[str, Any]]:
    return [rule for group in load("rules.yml")["groups"] for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("promtool is missing in CI: install Debian's `prometheus` package")
        pytest.skip("promtool not on PATH (apt-get install prometheus)")
    return path


def run_promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tool(promtool, *args, cwd=PROMETHEUS_DIR)


# -- promtool ---------------------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
def test_promtool_accepts_the_scrape_config_and_its_rule_files(promtool: str, config: str) -> None:
    result = run_promtool(promtool, "check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", "rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_the_alerts_fire_and_stay_quiet_as_their_unit_tests_say(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", "rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rejects_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    # Proves the check above can fail: a misspelt function must not pass.
    broken = {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "rat(up[5m])"}]}]}
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    result = run_promtool(promtool, "check", "rules", str(path))
    assert result.returncode != 0


# -- rules ------------------------------------------------------------------------------------


def test_every_required_alert_exists_once() -> None:
    names = [alert["alert"] for alert in alerts()]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_ALERTS


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_every_alert_has_a_for_a_severity_and_its_annotations(alert: dict[str, Any]) -> None:
    assert alert.get("for"), "without `for:` a single bad scrape pages someone"
    assert alert["labels"]["severity"] in {"critical", "warning"}
    assert alert["annotations"]["summary"].strip()
    assert alert["annotations"]["description"].strip()


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("alert") or r["record"])
def test_every_rule_names_only_exported_metrics_and_their_labels(rule: dict[str, Any]) -> None:
    refs = references(rule["expr"])
    allowed = metric_names.series_names(metric_names.names()) | PROMETHEUS_SERIES | recorded_names()
    assert refs.metrics, "a rule that reads no metric"
    assert refs.metrics <= allowed, refs.metrics - allowed
    for metric, label, _op, value in refs.matchers:
        assert label in known_labels(metric), (metric, label)
        if label == "outcome":
            assert set(value.split("|")) <= OUTCOMES[metric], (metric, value)
        if label == "event_type":
            assert value in KNOWN_EVENT_TYPES, value
        if label == "job":
            assert set(value.split("|")) <= JOBS, value
    labels = set().union(*(known_labels(m) for m in refs.metrics)) | {"le"}
    assert refs.grouping <= labels, refs.grouping - labels


def test_the_5xx_alert_counts_exactly_the_server_error_outcomes() -> None:
    (alert,) = [a for a in alerts() if a["alert"] == "SessionflowWebhookServerErrors"]
    (matcher,) = [m for m in references(alert["expr"]).matchers if m[1] == "outcome"]
    assert set(matcher[3].split("|")) == metric_names.server_error_outcomes()


def test_every_alert_is_shown_firing_by_the_rule_unit_tests() -> None:
    fired = {
        case["alertname"]
        for test in load("rules.test.yml")["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == {alert["alert"] for alert in alerts()}


# -- scrape configs ---------------------------------------------------------------------------


def targets(config: str) -> dict[str, list[str]]:
    return {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in load(config)["scrape_configs"]
    }


@pytest.mark.parametrize("config", CONFIGS)
def test_scrape_configs_load_the_rules_and_name_the_jobs_the_rules_use(config: str) -> None:
    assert load(config)["rule_files"] == ["rules.yml"]
    assert set(targets(config)) == JOBS
    for job in load(config)["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"


def test_the_local_config_scrapes_the_local_producer_and_worker() -> None:
    # The producer's admin port: its public port serves no /metrics.
    admin_port = ProducerSettings.model_fields["admin_port"].default
    worker_port = WorkerSettings.model_fields["worker_port"].default
    assert targets("prometheus-local.yml") == {
        "sessionflow-producer": [f"127.0.0.1:{admin_port}"],
        "sessionflow-worker": [f"127.0.0.1:{worker_port}"],
        "sessionflow-enricher": ["127.0.0.1:6067"],
    }
