"""The metric catalog reads the processes' registries; docs/metrics.md is what it reads."""

from __future__ import annotations

from cli import metric_names
from enricher.metrics import status_label


def test_docs_metrics_md_is_generated_from_the_registries() -> None:
    assert metric_names.DOC.read_text() == metric_names.render(), (
        "docs/metrics.md is stale: run `python -m cli.metric_names`"
    )


def test_every_metric_is_named_typed_and_labelled_the_project_way() -> None:
    seen: set[str] = set()
    for m in metric_names.catalog():
        assert m.name.startswith("sessionflow_"), m
        assert m.name not in seen, f"{m.name} is declared twice"
        seen.add(m.name)
        assert m.kind in {"counter", "gauge", "histogram"}, m
        assert m.name.endswith("_total") == (m.kind == "counter"), m
        assert m.help, m
        # Bounded label sets: never a session, message or phone as a label.
        assert not set(m.labels) & {"session_id", "sessionId", "message_id", "phone"}, m
    for process in ("producer", "worker", "enricher"):
        assert metric_names.names(process), process


def test_the_catalog_reads_what_each_process_declares() -> None:
    assert "sessionflow_webhooks_total" in metric_names.names("producer")
    assert "sessionflow_pairing_wait_seconds" in metric_names.names("worker")
    assert "sessionflow_transcript_fetch_seconds" in metric_names.names("enricher")
    # The producer's own collector (LoopHistogram) is read by what it yields.
    assert "sessionflow_webhook_request_seconds" in metric_names.histograms()
    assert metric_names.transcript_outcomes() == {"ok", "not_found", "failed"}
    assert metric_names.server_error_outcomes() < metric_names.webhook_outcomes()


def test_the_enricher_labels_http_statuses_from_a_bounded_set() -> None:
    labels = {status_label(code) for code in range(100, 600)} | {status_label(None)}
    labels |= {status_label(code) for code in (-1, 0, 99, 600, 999)}
    assert len(labels) <= 30
    assert {"200", "404", "429", "503", "3xx", "4xx", "5xx", "none", "other"} <= labels


def test_series_names_split_histograms_and_keep_the_rest() -> None:
    series = metric_names.series_names(
        frozenset({"sessionflow_webhooks_total", "sessionflow_pairing_wait_seconds"})
    )
    assert series == {
        "sessionflow_webhooks_total",
        "sessionflow_pairing_wait_seconds_bucket",
        "sessionflow_pairing_wait_seconds_sum",
        "sessionflow_pairing_wait_seconds_count",
    }


def test_labels_of_adds_le_to_buckets_only() -> None:
    assert metric_names.labels_of("sessionflow_pairing_wait_seconds_bucket") == {"le"}
    assert metric_names.labels_of("sessionflow_pairing_wait_seconds_sum") == frozenset()
    assert metric_names.labels_of("sessionflow_webhooks_total") == {"event_type", "outcome"}
    assert metric_names.labels_of("sessionflow_no_such_metric") == frozenset()
