"""The worker's Prometheus metrics, declared once; label values are bounded sets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sessionflow.events import KNOWN_EVENT_TYPES
from streams.core import Step
from streams.models import CompletedSession

SENTIMENTS: Final = frozenset({"POSITIVE", "NEUTRAL", "NEGATIVE"})
RESOLUTIONS: Final = frozenset({"RESOLVED", "PARTIALLY_RESOLVED", "UNRESOLVED", "NOT_APPLICABLE"})
OTHER: Final = "other"
NONE: Final = "none"

_SECONDS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A commit is a few broker round trips; exactly-once latency is the interval plus this.
_COMMIT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5)
_LONG_BUCKETS: Final = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


def event_type_label(event_type: str) -> str:
    return event_type if event_type in KNOWN_EVENT_TYPES else OTHER


class WorkerMetrics:
    """Every metric of one worker, on its own registry (several workers may share a process in tests)."""

    def __init__(self, max_intents: int, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "sessionflow_events",
            "Raw-topic records processed, by event type",
            ["event_type"],
            registry=r,
        )
        self.duplicates = Counter(
            "sessionflow_duplicates",
            "Duplicate halves dropped: retry (same message id), resend (new id, same content), conflict",
            ["event_type", "kind"],
            registry=r,
        )
        self.completed = Counter(
            "sessionflow_sessions_completed",
            "Completed-session records emitted",
            ["type", "platform", "direction"],
            registry=r,
        )
        self.incomplete = Counter(
            "sessionflow_sessions_incomplete",
            "Halves that found no pair within the TTL",
            ["reason"],
            registry=r,
        )
        self.pending = Gauge(
            "sessionflow_pending_sessions",
            "Halves waiting for their pair on this worker",
            registry=r,
        )
        self.duration = Histogram(
            "sessionflow_session_duration_seconds",
            "endedAt - createdAt of completed sessions",
            buckets=_LONG_BUCKETS,
            registry=r,
        )
        self.pairing_wait = Histogram(
            "sessionflow_pairing_wait_seconds",
            "First half to second half, by their received-at",
            buckets=_LONG_BUCKETS,
            registry=r,
        )
        self.end_to_end = Histogram(
            "sessionflow_end_to_end_seconds",
            "Producer's received-at of the second half to the completed record being sent",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.sentiment = Counter(
            "sessionflow_sentiment",
            "Completed sessions by conversation sentiment",
            ["sentiment"],
            registry=r,
        )
        self.resolution = Counter(
            "sessionflow_resolution",
            "Completed sessions by resolution",
            ["classification"],
            registry=r,
        )
        self.intent = Counter(
            "sessionflow_intent",
            "Completed sessions by conversation intent (bounded)",
            ["intent"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "sessionflow_dead_lettered", "Records sent to the DLQ", ["reason"], registry=r
        )
        self.half_conflicts = Counter(
            "sessionflow_half_conflicts",
            "Completed sessions whose halves disagree on an identity field",
            ["field"],
            registry=r,
        )
        self.guarantee = Gauge(
            "sessionflow_processing_guarantee",
            "1 for the processing guarantee the worker runs with (exactly_once or at_least_once),"
            " and its transactions (partition, worker or none)",
            ["guarantee", "transactions"],
            registry=r,
        )
        self.held_back = Counter(
            "sessionflow_events_held_back",
            "Records fetched but not applied, to be read again from the committed offset, by reason",
            ["reason"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "sessionflow_consumer_lag",
            "Records between the group's committed offset and the raw topic's end, by partition",
            ["partition"],
            registry=r,
        )
        self.stalled = Gauge(
            "sessionflow_partition_stalled_seconds",
            "How long the committed offset has stood still with records behind it, by partition",
            ["partition"],
            registry=r,
        )
        self.ends_read = Gauge(
            "sessionflow_partition_ends_read_timestamp_seconds",
            "When the worker last read its raw partitions' ends (Unix time): the consumer lag and"
            " stall figures are as of then",
            registry=r,
        )
        self.commit = Histogram(
            "sessionflow_commit_seconds",
            "How long a commit took (exactly-once: every changed partition's transaction ends)",
            buckets=_COMMIT_BUCKETS,
            registry=r,
        )
        self.transactions_dropped = Counter(
            "sessionflow_transactions_dropped",
            "Open transactions that could not commit and were dropped in place, by reason:"
            " membership_lost (the group had forgotten the worker), fenced (the broker aborted the"
            " transaction, as at its timeout, or the worker's next owner fenced its transactional"
            " id) or sender_stopped (the producer stopped on another error); the partitions they"
            " changed are restored from the changelog and the worker runs on",
            ["reason"],
            registry=r,
        )
        self.restore_waits = Histogram(
            "sessionflow_restore_wait_seconds",
            "How long a restore waited for transactions left open on the changelog by a worker"
            " paused, cut off or killed (exactly-once)",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.transactions_fenced = Counter(
            "sessionflow_transactions_fenced",
            "Transactional ids of lost workers that a restore fenced, so that their open"
            " transactions abort at once instead of at the broker's timeout (one transaction per"
            " worker)",
            registry=r,
        )
        self._max_intents = max_intents
        self._intents: set[str] = set()
        # The per-event counters are added up here and applied once per batch (`flush`): each
        # `inc` on a Prometheus counter takes a lock, and `labels()` validates on every call.
        # Keys are (counter, label values); label sets are bounded.
        self._tally: dict[tuple[Counter, tuple[str, ...]], int] = {}

    def _count(self, metric: Counter, *labels: str) -> None:
        key = (metric, labels)
        self._tally[key] = self._tally.get(key, 0) + 1

    def flush(self) -> None:
        """Apply the counts added up since the last flush (the processor calls it per batch)."""
        tally, self._tally = self._tally, {}
        for (metric, labels), count in tally.items():
            metric.labels(*labels).inc(count)

    def observe_restore_wait(self, seconds: float, fenced: int) -> None:
        """Called from the consumer's thread; prometheus_client's metrics take their own locks."""
        self.restore_waits.observe(seconds)
        self.transactions_fenced.inc(fenced)

    def observe_commit(self, seconds: float, partitions: int) -> None:
        del partitions  # the time is what operators watch; a transaction per partition is why
        self.commit.observe(seconds)

    def observe(self, event_type: str, step: Step, now_ms: int, received_at_ms: int) -> None:
        """Count one processed raw record and what the core made of it."""
        label = event_type_label(event_type)
        self._count(self.events, label)
        if step.duplicate is not None:
            self._count(self.duplicates, label, step.duplicate)
        if step.pairing_wait_ms is not None:
            self.pairing_wait.observe(step.pairing_wait_ms / 1000)
            self.end_to_end.observe(max(0, now_ms - received_at_ms) / 1000)
        for name in step.half_conflicts:
            self._count(self.half_conflicts, name)
        self.observe_outputs(step)

    def observe_outputs(self, step: Step) -> None:
        for record in step.outputs:
            if isinstance(record, CompletedSession):
                self._completed(record)
            else:
                self._count(self.incomplete, str(record.reason))

    def _completed(self, record: CompletedSession) -> None:
        self._count(self.completed, record.type, record.platform, record.direction)
        self.duration.observe(max(0.0, record.durationSeconds))
        analysis = record.analysis or {}
        sentiment = _dig(analysis, "sentiment", "conversation", "sentiment")
        self._count(
            self.sentiment, sentiment if sentiment in SENTIMENTS else (OTHER if sentiment else NONE)
        )
        resolution = _dig(analysis, "resolution", "classification")
        self._count(
            self.resolution,
            resolution if resolution in RESOLUTIONS else (OTHER if resolution else NONE),
        )
        self._count(
            self.intent, self._intent_label(_dig(analysis, "intent", "conversation", "intent"))
        )

    def _intent_label(self, intent: str | None) -> str:
        if not intent:
            return NONE
        # Intents are free text from the customer's agent: the first max_intents seen get a
        # label of their own, the rest count as "other", so the series count stays bounded.
        label = intent[:64]
        if label in self._intents:
            return label
        if len(self._intents) < self._max_intents:
            self._intents.add(label)
            return label
        return OTHER


def _dig(obj: Mapping[str, Any], *path: str) -> str | None:
    node: Any = obj
    for name in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(name)
    return node if isinstance(node, str) else None
