"""The producer's Prometheus metrics, on a registry of their own (one per app instance)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sessionflow.events import KNOWN_EVENT_TYPES

OUTCOMES = (
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
)
# Before the body is parsed the event type is not known; afterwards it is a known one or `other`.
EVENT_TYPE_LABELS = (*sorted(KNOWN_EVENT_TYPES), "other", "unknown")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SIZE_BUCKETS = (256, 1024, 2048, 4096, 8192, 16384, 65536, 262144, 1048576, 4194304)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ProducerMetrics:
    """Counters and histograms with label children resolved once, not per request."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        webhooks = Counter(
            "sessionflow_webhooks",
            "Webhook requests by event type and outcome.",
            ("event_type", "outcome"),
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "sessionflow_webhook_request_seconds",
            "Time from the request's start to the response on the webhook endpoint.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.publish_seconds = Histogram(
            "sessionflow_kafka_publish_seconds",
            "Time from the send to the broker's acknowledgement (acks=all).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.body_bytes = Histogram(
            "sessionflow_webhook_body_bytes",
            "Size of the webhook bodies read (capped ones count up to the cap).",
            buckets=_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.ready = Gauge(
            "sessionflow_producer_ready",
            "1 while Kafka is reachable and the producer works (what /readyz answers), else 0.",
            registry=self.registry,
        )
        # Every series exists from the start, so dashboards see zeros rather than gaps.
        self._webhooks = {
            (et, oc): webhooks.labels(event_type=et, outcome=oc)
            for et in EVENT_TYPE_LABELS
            for oc in OUTCOMES
        }

    def track_readiness(self, ready: Callable[[], bool]) -> None:
        """Read readiness (what /readyz answers) at every scrape."""
        self.ready.set_function(lambda: float(ready()))

    def count(self, event_type_label: str, outcome: str) -> None:
        self._webhooks[event_type_label, outcome].inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
