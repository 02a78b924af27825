"""sessionflow.metric_names lists exactly what the producer's and the worker's registries export."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from enricher.metrics import EnricherMetrics, status_label
from enricher.records import TranscriptStatus
from producer.metrics import OUTCOMES, ProducerMetrics
from sessionflow import metric_names
from streams.metrics import WorkerMetrics


def families(registry: CollectorRegistry) -> dict[str, tuple[str, frozenset[str]]]:
    """Name as PromQL sees it -> (type, label names), for every metric on the registry."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    # prometheus_client has no public way to read a labelled metric's label names before it
    # has children; the registry's collector map and the wrapper's fields are stable for years.
    for collector in list(registry._collector_to_names):
        if isinstance(collector, MetricWrapperBase):
            kind = str(collector._type)
            name = collector._name + ("_total" if kind == "counter" else "")
            out[name] = (kind, frozenset(collector._labelnames))
        else:
            # Our own unlabelled collectors (producer.metrics.LoopHistogram): what they yield.
            for family in collector.collect():
                suffix = "_total" if family.type == "counter" else ""
                labels = {k for sample in family.samples for k in sample.labels} - {"le"}
                out[family.name + suffix] = (family.type, frozenset(labels))
    return out


def kinds_of(
    counters: frozenset[str], gauges: frozenset[str], histograms: frozenset[str]
) -> dict[str, str]:
    return (
        dict.fromkeys(counters, "counter")
        | dict.fromkeys(gauges, "gauge")
        | dict.fromkeys(histograms, "histogram")
    )


def labels_declared(names: frozenset[str]) -> dict[str, frozenset[str]]:
    return {name: metric_names.LABELS.get(name, frozenset()) for name in names}


def test_the_producer_exports_exactly_the_listed_metrics() -> None:
    exported = families(ProducerMetrics().registry)
    expected = kinds_of(
        metric_names.PRODUCER_COUNTERS,
        metric_names.PRODUCER_GAUGES,
        metric_names.PRODUCER_HISTOGRAMS,
    )
    assert {n: k for n, (k, _) in exported.items()} == expected
    assert {n: labels for n, (_, labels) in exported.items()} == labels_declared(
        metric_names.PRODUCER
    )


def test_the_worker_exports_exactly_the_listed_metrics() -> None:
    exported = families(WorkerMetrics(max_intents=50).registry)
    expected = kinds_of(
        metric_names.WORKER_COUNTERS, metric_names.WORKER_GAUGES, metric_names.WORKER_HISTOGRAMS
    )
    assert {n: k for n, (k, _) in exported.items()} == expected
    assert {n: labels for n, (_, labels) in exported.items()} == labels_declared(
        metric_names.WORKER
    )


def test_the_enricher_exports_exactly_the_listed_metrics() -> None:
    exported = families(EnricherMetrics().registry)
    expected = kinds_of(
        metric_names.ENRICHER_COUNTERS,
        metric_names.ENRICHER_GAUGES,
        metric_names.ENRICHER_HISTOGRAMS,
    )
    assert {n: k for n, (k, _) in exported.items()} == expected
    assert {n: labels for n, (_, labels) in exported.items()} == labels_declared(
        metric_names.ENRICHER
    )
    assert frozenset(s.value for s in TranscriptStatus) == metric_names.TRANSCRIPT_OUTCOMES


def test_the_enricher_labels_http_statuses_from_a_bounded_set() -> None:
    labels = {status_label(code) for code in range(100, 600)} | {status_label(None)}
    labels |= {status_label(code) for code in (-1, 0, 99, 600, 999)}
    assert len(labels) <= 30
    assert {"200", "404", "429", "503", "3xx", "4xx", "5xx", "none", "other"} <= labels


def test_the_outcomes_are_the_producers() -> None:
    assert frozenset(OUTCOMES) == metric_names.WEBHOOK_OUTCOMES
    assert metric_names.SERVER_ERROR_OUTCOMES < metric_names.WEBHOOK_OUTCOMES


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
