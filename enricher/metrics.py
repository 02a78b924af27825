"""The enricher's Prometheus metrics, declared once; every label value comes from a bounded set."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from enricher.records import FailureReason, TranscriptStatus

# HTTP statuses worth a series of their own; any other is counted by its class ("4xx", ...).
KNOWN_STATUSES: Final = frozenset(
    {200, 204, 400, 401, 403, 404, 408, 409, 410, 413, 422, 425, 429, 500, 502, 503, 504}
)
NONE: Final = "none"
SKIP_REASONS: Final = ("already_written", "invalid_input")
RETRY_REASONS: Final = ("429", "5xx", "other_status", "timeout", "connection_error")
_FETCH_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def status_label(status: int | None) -> str:
    """A bounded label for an HTTP status: itself when well known, else its class."""
    if status is None:
        return NONE
    if status in KNOWN_STATUSES:
        return str(status)
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def retry_reason(error: FailureReason, status: int | None) -> str:
    if error is FailureReason.TIMEOUT:
        return "timeout"
    if error is FailureReason.CONNECTION_ERROR:
        return "connection_error"
    if status == 429:
        return "429"
    if status is not None and 500 <= status < 600:
        return "5xx"
    return "other_status"


class EnricherMetrics:
    """Every metric of one enricher, on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.fetches = Counter(
            "sessionflow_transcript_fetches",
            "Transcript records written, by outcome (ok, not_found, failed) and last HTTP status",
            ["outcome", "http_status"],
            registry=r,
        )
        self.failures = Counter(
            "sessionflow_transcript_failures",
            "Failed transcript records by reason",
            ["reason"],
            registry=r,
        )
        self.requests = Counter(
            "sessionflow_transcript_requests",
            "HTTP requests to the Agntix API by answer (status, timeout, connection_error)",
            ["http_status"],
            registry=r,
        )
        self.retries = Counter(
            "sessionflow_transcript_retries",
            "Requests repeated after a 429, 5xx, timeout or connection error",
            ["reason"],
            registry=r,
        )
        self.fetch_seconds = Histogram(
            "sessionflow_transcript_fetch_seconds",
            "One session's fetch, from its first request to its result (pages, retries, waits)",
            buckets=_FETCH_BUCKETS,
            registry=r,
        )
        self.skipped = Counter(
            "sessionflow_enricher_skipped",
            "Completed records not fetched: transcript already written, or no session id",
            ["reason"],
            registry=r,
        )
        self.auth_failures = Counter(
            "sessionflow_enricher_auth_failures",
            "401/403 answers: the credential is refused and fetching pauses",
            ["http_status"],
            registry=r,
        )
        self.authorized = Gauge(
            "sessionflow_enricher_authorized",
            "0 while the API refuses the credential (fetching paused), else 1",
            registry=r,
        )
        self.in_flight = Gauge(
            "sessionflow_enricher_in_flight",
            "Sessions being fetched or written right now",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "sessionflow_enricher_consumer_lag",
            "Completed records not yet enriched, by partition",
            ["partition"],
            registry=r,
        )
        self.ends_read = Gauge(
            "sessionflow_enricher_ends_read_timestamp_seconds",
            "When the enricher last read its partitions' ends (Unix time): the lag is as of then",
            registry=r,
        )
        self.authorized.set(1)
        # Every series exists from the start, so dashboards and alerts see zeros, not gaps.
        for outcome in TranscriptStatus:
            self.fetches.labels(outcome.value, NONE)
        for reason in FailureReason:
            self.failures.labels(reason.value)
        for skip in SKIP_REASONS:
            self.skipped.labels(skip)
        for retry in RETRY_REASONS:
            self.retries.labels(retry)

    def finished(
        self, status: TranscriptStatus, http_status: int | None, error: FailureReason | None
    ) -> None:
        self.fetches.labels(status.value, status_label(http_status)).inc()
        if error is not None:
            self.failures.labels(error.value).inc()

    def request(self, answer: str) -> None:
        self.requests.labels(answer).inc()

    def retry(self, error: FailureReason, status: int | None) -> None:
        self.retries.labels(retry_reason(error, status)).inc()
