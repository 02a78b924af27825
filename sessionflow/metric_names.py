"""Every Prometheus metric name each sessionflow process exports, for dashboards, rules and tests."""

from __future__ import annotations

# Names as PromQL sees them: counters with their `_total`, histograms by their base name.
PRODUCER_COUNTERS: frozenset[str] = frozenset({"sessionflow_webhooks_total"})
PRODUCER_GAUGES: frozenset[str] = frozenset({"sessionflow_producer_ready"})
PRODUCER_HISTOGRAMS: frozenset[str] = frozenset(
    {
        "sessionflow_webhook_request_seconds",
        "sessionflow_kafka_publish_seconds",
        "sessionflow_webhook_body_bytes",
    }
)
PRODUCER: frozenset[str] = PRODUCER_COUNTERS | PRODUCER_GAUGES | PRODUCER_HISTOGRAMS

WORKER_COUNTERS: frozenset[str] = frozenset(
    {
        "sessionflow_events_total",
        "sessionflow_duplicates_total",
        "sessionflow_sessions_completed_total",
        "sessionflow_sessions_incomplete_total",
        "sessionflow_sentiment_total",
        "sessionflow_resolution_total",
        "sessionflow_intent_total",
        "sessionflow_dead_lettered_total",
        "sessionflow_half_conflicts_total",
        "sessionflow_events_held_back_total",
    }
)
WORKER_GAUGES: frozenset[str] = frozenset(
    {
        "sessionflow_pending_sessions",
        "sessionflow_consumer_lag",
        "sessionflow_partition_stalled_seconds",
        "sessionflow_processing_guarantee",
    }
)
WORKER_HISTOGRAMS: frozenset[str] = frozenset(
    {
        "sessionflow_session_duration_seconds",
        "sessionflow_pairing_wait_seconds",
        "sessionflow_end_to_end_seconds",
    }
)
WORKER: frozenset[str] = WORKER_COUNTERS | WORKER_GAUGES | WORKER_HISTOGRAMS

ENRICHER_COUNTERS: frozenset[str] = frozenset(
    {
        "sessionflow_transcript_fetches_total",
        "sessionflow_transcript_failures_total",
        "sessionflow_transcript_requests_total",
        "sessionflow_transcript_retries_total",
        "sessionflow_enricher_skipped_total",
        "sessionflow_enricher_auth_failures_total",
    }
)
ENRICHER_GAUGES: frozenset[str] = frozenset(
    {
        "sessionflow_enricher_authorized",
        "sessionflow_enricher_in_flight",
        "sessionflow_enricher_consumer_lag",
    }
)
ENRICHER_HISTOGRAMS: frozenset[str] = frozenset({"sessionflow_transcript_fetch_seconds"})
ENRICHER: frozenset[str] = ENRICHER_COUNTERS | ENRICHER_GAUGES | ENRICHER_HISTOGRAMS

ALL: frozenset[str] = PRODUCER | WORKER | ENRICHER
HISTOGRAMS: frozenset[str] = PRODUCER_HISTOGRAMS | WORKER_HISTOGRAMS | ENRICHER_HISTOGRAMS

# Label names per metric; label sets are bounded (never a session id or a phone number).
LABELS: dict[str, frozenset[str]] = {
    "sessionflow_webhooks_total": frozenset({"event_type", "outcome"}),
    "sessionflow_events_total": frozenset({"event_type"}),
    "sessionflow_duplicates_total": frozenset({"event_type", "kind"}),
    "sessionflow_sessions_completed_total": frozenset({"type", "platform", "direction"}),
    "sessionflow_sessions_incomplete_total": frozenset({"reason"}),
    "sessionflow_sentiment_total": frozenset({"sentiment"}),
    "sessionflow_resolution_total": frozenset({"classification"}),
    "sessionflow_intent_total": frozenset({"intent"}),
    "sessionflow_dead_lettered_total": frozenset({"reason"}),
    "sessionflow_half_conflicts_total": frozenset({"field"}),
    "sessionflow_events_held_back_total": frozenset({"reason"}),
    "sessionflow_consumer_lag": frozenset({"partition"}),
    "sessionflow_partition_stalled_seconds": frozenset({"partition"}),
    "sessionflow_processing_guarantee": frozenset({"guarantee"}),
    "sessionflow_transcript_fetches_total": frozenset({"outcome", "http_status"}),
    "sessionflow_transcript_failures_total": frozenset({"reason"}),
    "sessionflow_transcript_requests_total": frozenset({"http_status"}),
    "sessionflow_transcript_retries_total": frozenset({"reason"}),
    "sessionflow_enricher_skipped_total": frozenset({"reason"}),
    "sessionflow_enricher_auth_failures_total": frozenset({"http_status"}),
    "sessionflow_enricher_consumer_lag": frozenset({"partition"}),
}

# The enricher's `outcome` label values (a transcript record's status).
TRANSCRIPT_OUTCOMES: frozenset[str] = frozenset({"ok", "not_found", "failed"})

# The producer's `outcome` label values: one per way a request can end.
WEBHOOK_OUTCOMES: frozenset[str] = frozenset(
    {
        "accepted",
        "dead_lettered",
        "unauthorized",
        "too_large",
        "unsupported_media_type",
        "timeout",
        "unavailable",
        "method_not_allowed",
        "not_found",
        "bad_request",
    }
)
# The outcomes answered with a 5xx: the sender retries them, operators should look.
SERVER_ERROR_OUTCOMES: frozenset[str] = frozenset({"timeout", "unavailable"})

HISTOGRAM_SUFFIXES: tuple[str, ...] = ("_bucket", "_sum", "_count")


def series_names(names: frozenset[str]) -> frozenset[str]:
    """The sample names a scrape yields for these metrics (histograms split into three series)."""
    out: set[str] = set()
    for name in names:
        if name in HISTOGRAMS:
            out.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        else:
            out.add(name)
    return frozenset(out)


def labels_of(name: str) -> frozenset[str]:
    """The label names of a sample name (`_bucket` adds `le`); empty for an unlabelled metric."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and base in HISTOGRAMS:
            return LABELS.get(base, frozenset()) | (
                frozenset({"le"}) if suffix == "_bucket" else frozenset()
            )
    return LABELS.get(name, frozenset())
