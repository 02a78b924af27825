"""deploy/grafana: the dashboard queries only exported metrics, parses, and is provisioned."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import metric_names
from tests.unit.deploy._manifests import run_tool
from tests.unit.deploy._promql import PROMETHEUS_SERIES, expand_grafana, known_labels, references

GRAFANA_DIR = Path(__file__).resolve().parents[3] / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "sessionflow.json"
GRID_WIDTH = 24


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


def test_the_dashboard_is_a_current_grafana_dashboard_with_a_datasource_variable() -> None:
    data = dashboard()
    assert data["uid"] == "sessionflow"
    assert data["schemaVersion"] >= 36
    (variable,) = [v for v in data["templating"]["list"] if v["name"] == "datasource"]
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    expected = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels():
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]


def test_panel_ids_and_query_ref_ids_are_unique() -> None:
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_panels_fit_the_grid_without_overlapping() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0
        assert pos["w"] > 0
        assert pos["x"] + pos["w"] <= GRID_WIDTH, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


@pytest.mark.parametrize("expr", queries())
def test_every_query_names_only_metrics_and_labels_the_code_exports(expr: str) -> None:
    refs = references(expr)
    allowed = metric_names.series_names(metric_names.names()) | PROMETHEUS_SERIES
    assert refs.metrics, "a query that reads no metric"
    assert refs.metrics <= allowed, refs.metrics - allowed
    for metric, label, _op, value in refs.matchers:
        assert label in known_labels(metric), (metric, label)
        if label == "outcome":
            outcomes = (
                metric_names.transcript_outcomes()
                if metric.startswith("sessionflow_transcript")
                else metric_names.webhook_outcomes()
            )
            assert set(value.split("|")) <= outcomes, value
    labels = set().union(*(known_labels(m) for m in refs.metrics)) | {"le"}
    assert refs.grouping <= labels, refs.grouping - labels


def test_quantiles_read_histogram_buckets_by_le() -> None:
    for expr in queries():
        if "histogram_quantile" in expr:
            refs = references(expr)
            assert "le" in refs.grouping, expr
            assert all(m.endswith("_bucket") for m in refs.metrics), expr


def test_the_dashboard_shows_every_exported_metric() -> None:
    used: set[str] = set().union(*(references(expr).metrics for expr in queries()))
    shown = {
        name
        for name in metric_names.names()
        if name in used or any(s in used for s in metric_names.series_names(frozenset({name})))
    }
    assert shown == metric_names.names(), metric_names.names() - shown


def test_the_reference_check_catches_an_unknown_metric() -> None:
    # Proves the check above can fail: a misspelt metric is not in the exported names.
    refs = references("sum(rate(sessionflow_webhook_total[$__rate_interval]))")
    assert not refs.metrics <= metric_names.series_names(metric_names.names())


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("promtool is missing in CI: install Debian's `prometheus` package")
        pytest.skip("promtool not on PATH (apt-get install prometheus)")
    # Each query as a recording rule: `promtool check rules` then parses it as PromQL.
    group = {
        "name": "dashboard",
        "rules": [
            {"record": f"dashboard:query{i}", "expr": expand_grafana(expr)}
            for i, expr in enumerate(queries())
        ],
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [group]}))
    result = run_tool(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisions_the_dashboard_folder_and_a_prometheus_datasource() -> None:
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "sessionflow.yml").read_text()
    )
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((GRAFANA_DIR.parent / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts

    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
