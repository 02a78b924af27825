"""The producer's Prometheus metrics, on a registry of their own (one per app instance)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

from producer.publisher import REPLACE_REASONS
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
    "internal_error",
)
# The outcomes answered with a 5xx: the sender retries them, operators should look.
SERVER_ERROR_OUTCOMES = frozenset({"timeout", "unavailable", "internal_error"})
# Before the body is parsed the event type is not known; afterwards it is a known one or `other`.
EVENT_TYPE_LABELS = (*sorted(KNOWN_EVENT_TYPES), "other", "unknown")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# How late the event loop ran a timer: under a millisecond is on time (uvloop's resolution).
_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_SIZE_BUCKETS = (256, 1024, 2048, 4096, 8192, 16384, 65536, 262144, 1048576, 4194304)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class LoopHistogram:
    """A histogram observed and scraped on the event loop only: no lock, the same exposition.

    prometheus_client's Histogram takes a lock per bucket and for the sum on every observation;
    three per request were ~5 us of the handler's ~40 (bench/results/producer-experiments.md).
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = (*(float(b) for b in buckets), math.inf)
        # The library formats `le` this way (untyped there).
        self._labels = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        registry.register(self)

    def observe(self, amount: float) -> None:
        # The first bucket whose upper bound is >= amount, as prometheus_client counts it.
        self._counts[bisect.bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def collect(self) -> Iterator[Metric]:
        cumulative, total = [], 0
        for label, count in zip(self._labels, self._counts, strict=True):
            total += count
            cumulative.append((label, float(total)))
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=cumulative, sum_value=self._sum
        )


class ClientsReplaced:
    """How often the Kafka client was replaced, by reason: the publisher counts, a scrape reads."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Every reason's series exists from the start, at zero until a publisher is tracked.
        self._read: Callable[[], Mapping[str, int]] = lambda: dict.fromkeys(REPLACE_REASONS, 0)
        registry.register(self)

    def track(self, read: Callable[[], Mapping[str, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "sessionflow_producer_kafka_clients_replaced",
            "Kafka clients replaced by a fresh one: after a fatal error, or after Kafka stayed "
            "unreachable (librdkafka can lose every broker for good).",
            labels=("reason",),
        )
        for reason, count in sorted(self._read().items()):
            family.add_metric((reason,), float(count))
        yield family


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
        self.request_seconds = LoopHistogram(
            "sessionflow_webhook_request_seconds",
            "Time from the request's start to the response on the webhook endpoint.",
            _LATENCY_BUCKETS,
            self.registry,
        )
        self.publish_seconds = LoopHistogram(
            "sessionflow_kafka_publish_seconds",
            "Time from the send to the broker's acknowledgement (acks=all).",
            _LATENCY_BUCKETS,
            self.registry,
        )
        self.body_bytes = LoopHistogram(
            "sessionflow_webhook_body_bytes",
            "Size of the webhook bodies read (capped ones count up to the cap).",
            _SIZE_BUCKETS,
            self.registry,
        )
        self.loop_lag = LoopHistogram(
            "sessionflow_producer_event_loop_lag_seconds",
            "How late the event loop ran a timer due every 0.1 s: what every request waits while"
            " the loop is busy or stalled (a long callback, a garbage collection, too little CPU).",
            _LAG_BUCKETS,
            self.registry,
        )
        self.ready = Gauge(
            "sessionflow_producer_ready",
            "1 while Kafka is reachable and the producer works (what /readyz answers), else 0.",
            registry=self.registry,
        )
        self.clients_replaced = ClientsReplaced(self.registry)
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
