"""The producer's exception hierarchy: each failure carries the reason code that the client sees."""

from __future__ import annotations


class ProducerError(Exception):
    """Base of every error the producer raises on purpose."""

    reason: str = "producer_error"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class VerificationError(ProducerError):
    """The webhook signature headers are missing, malformed, stale or do not match (401)."""


class EnvelopeError(ProducerError):
    """A genuine webhook whose body we cannot route: it goes to the DLQ."""


class PublishUnavailable(ProducerError):
    """Kafka did not acknowledge the record in time, or the producer is broken (503)."""


class RecordTooLarge(ProducerError):
    """Kafka refuses the record for its size: retrying would never help (413)."""
