"""The raw-record contract: how a webhook is keyed and partitioned in Kafka, and its headers.

The producer writes it, the worker and the tools read it; this module is its one home.
"""

from __future__ import annotations

from typing import Final

from aiokafka.partitioner import murmur2

MESSAGE_ID: Final = "message-id"
EVENT_TYPE: Final = "event-type"
RECEIVED_AT: Final = "received-at"
# Dead letters add these.
REASON: Final = "reason"
STAGE: Final = "stage"


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition of a keyed record: murmur2, as Kafka's Java client, aiokafka and the
    producer's librdkafka (`murmur2_random`) choose it. Every project topic has the same count,
    so a session's raw, dead-lettered, completed and incomplete records share this partition."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions
