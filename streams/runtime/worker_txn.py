"""One transaction per worker (KIP-447): the group's generation fences it, offsets are read stable.

With `SESSIONFLOW_TRANSACTION_SCOPE=worker` a worker commits all its partitions in one
transaction instead of one per partition (bench/results/worker-waits.md, section 6: a third of
the commit's time and CPU at 12 partitions). A partition's next owner can then no longer fence the
previous one by opening the partition's transactional id. Two things take that job, as in Kafka
Streams' exactly-once v2; aiokafka 0.14 has neither, so both are here:

- **The offsets carry the group's generation.** TxnOffsetCommit v3 names the member and its
  generation, and the broker refuses a member that is no longer in the group, or is in an older
  generation (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID): a worker whose
  partitions moved on cannot commit their offsets, so its transaction, outputs and changelog
  records included, aborts. `commit_with_generation` has a producer's sender send v3.
- **A new owner reads only stable offsets.** A transaction the previous owner got its offsets
  into before the generation changed may still commit. OffsetFetch v7 with `require_stable`
  answers UNSTABLE_OFFSET_COMMIT for a partition while such a transaction is open, and the
  consumer tries again until it has ended (committed or aborted), instead of starting from the
  offsets before it and processing its records twice. `fetch_stable_offsets` has a consumer's
  group coordinator fetch that way.

What neither does is end the lost worker's open transaction: it stays open on the changelog
until the broker's timeout, and the new owner's restore waits for it. The restore fences the lost
worker's transactional id instead (streams/runtime/fencing.py).

The request and response layouts are Kafka's (TxnOffsetCommit v3, OffsetFetch v7, both flexible),
declared in streams/runtime/protocol.py's way; every broker since Kafka 2.5 takes them.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from aiokafka import TopicPartition
from aiokafka import errors as Errors
from aiokafka.client import CoordinationType
from aiokafka.producer.sender import TxnOffsetCommitHandler
from aiokafka.protocol.types import Boolean, Int16, Int32, Int64
from aiokafka.structs import OffsetAndMetadata

from streams.runtime.protocol import (
    STRING,
    by_topic,
    flexible_api,
    topic_partitions,
    topics,
)

log = logging.getLogger(__name__)

NO_OFFSET = -1
NO_LEADER_EPOCH = -1
# Kafka's error codes that say the committing member is not (or no longer) the group's.
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
FENCED_INSTANCE_ID = 82
FENCING_ERRORS = frozenset({ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID})
UNSTABLE_OFFSET_COMMIT = 88


@dataclass(frozen=True, slots=True)
class GroupMember:
    """Who commits: the consumer's member id and generation in its group right now."""

    generation: int
    member_id: str
    group_instance_id: str | None = None

    @property
    def in_group(self) -> bool:
        """False once the consumer has forgotten its membership (aiokafka resets it to generation
        -1 and no member id when the group no longer knows the member)."""
        return self.generation >= 0 and bool(self.member_id)


class MembershipLost(Errors.ProducerFenced):  # type: ignore[misc]  # aiokafka is untyped
    """The group no longer knows this worker as the member that processed the open transaction's
    records: its offsets were refused, so the transaction must abort. The producer is fenced
    like any other (aiokafka's sender stops); the runtime drops the uncommitted work in place
    and rejoins (streams/runtime/runner.py) instead of stopping the worker."""

    drop_reason: ClassVar[str] = "membership_lost"  # sessionflow_transactions_dropped's label


class UnstableOffsetCommit(Errors.KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """A partition's offsets are in a transaction that has not ended yet: ask again soon."""

    errno = UNSTABLE_OFFSET_COMMIT
    message = "UNSTABLE_OFFSET_COMMIT"
    description = "There are unstable offsets that need to be cleared."
    retriable = True


# A committed offset as TxnOffsetCommit and OffsetFetch carry it, after the partition's index.
_COMMITTED = (("committed_offset", Int64), ("committed_leader_epoch", Int32))

TXN_OFFSET_COMMIT = flexible_api(
    "TxnOffsetCommit",
    28,
    3,
    request=(
        ("transactional_id", STRING),
        ("group_id", STRING),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", STRING),
        ("group_instance_id", STRING),
        (
            "topics",
            topic_partitions(
                ("partition_index", Int32), *_COMMITTED, ("committed_metadata", STRING)
            ),
        ),
    ),
    response=(
        ("throttle_time_ms", Int32),
        (
            "topics",
            topic_partitions(("partition_index", Int32), ("error_code", Int16)),
        ),
    ),
)
OFFSET_FETCH = flexible_api(
    "OffsetFetch",
    9,
    7,
    request=(
        ("group_id", STRING),
        ("topics", topics()),
        ("require_stable", Boolean),
    ),
    response=(
        ("throttle_time_ms", Int32),
        (
            "topics",
            topic_partitions(
                ("partition_index", Int32),
                *_COMMITTED,
                ("metadata", STRING),
                ("error_code", Int16),
            ),
        ),
        ("error_code", Int16),
    ),
)


def txn_offset_commit(
    *,
    transactional_id: str,
    group_id: str,
    producer_id: int,
    producer_epoch: int,
    member: GroupMember,
    offsets: Mapping[TopicPartition, OffsetAndMetadata],
) -> Any:
    """A transaction's offsets, committed as `member` of the group (v3 only)."""
    committed: dict[str, list[tuple[int, int, int, str, dict[int, bytes]]]] = (
        collections.defaultdict(list)
    )
    for tp, offset in sorted(offsets.items()):
        committed[tp.topic].append(
            (tp.partition, offset.offset, NO_LEADER_EPOCH, offset.metadata, {})
        )
    return TXN_OFFSET_COMMIT.request(
        transactional_id,
        group_id,
        producer_id,
        producer_epoch,
        member.generation,
        member.member_id,
        member.group_instance_id,
        [(topic, partitions, {}) for topic, partitions in committed.items()],
    )


def stable_offset_fetch(group_id: str, partitions: list[TopicPartition]) -> Any:
    """The committed offsets of `partitions`, stable ones only (v7 only)."""
    return OFFSET_FETCH.request(group_id, by_topic(partitions), True)


def committed_offsets(response: Any) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets an OffsetFetch v7 answer holds (a partition without one left out); raises what
    the answer says went wrong, UnstableOffsetCommit when a transaction still holds one."""
    if response.error_code:
        raise Errors.for_code(response.error_code)()
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    for topic, partitions, _ in response.topics:
        for partition, offset, _epoch, metadata, error_code, _ in partitions:
            if error_code == UNSTABLE_OFFSET_COMMIT:
                raise UnstableOffsetCommit(f"{topic}[{partition}]")
            if error_code == Errors.UnknownTopicOrPartitionError.errno:
                log.warning("OffsetFetch: unknown topic %s", topic)
                continue
            if error_code:
                raise Errors.for_code(error_code)()
            if offset != NO_OFFSET:
                offsets[TopicPartition(topic, partition)] = OffsetAndMetadata(offset, metadata)
    return offsets


class GenerationOffsetCommit(TxnOffsetCommitHandler):  # type: ignore[misc]  # aiokafka is untyped
    """aiokafka's TxnOffsetCommit handler, sending v3 with the group member (its retries, its
    bookkeeping of committed offsets and its errors otherwise): a member the group refuses is
    a fenced producer (`MembershipLost`)."""

    def __init__(
        self,
        sender: Any,
        offsets: Mapping[TopicPartition, OffsetAndMetadata],
        group_id: str,
        member: GroupMember,
    ) -> None:
        super().__init__(sender, offsets, group_id)
        self._member = member

    def create_request(self) -> Any:
        txn_manager = self._sender._txn_manager
        return txn_offset_commit(
            transactional_id=txn_manager.transactional_id,
            group_id=self._group_id,
            producer_id=txn_manager.producer_id,
            producer_epoch=txn_manager.producer_epoch,
            member=self._member,
            offsets=self._offsets,
        )

    def handle_response(self, resp: Any) -> float | None:
        errors = [
            (topic, [(partition, error_code) for partition, error_code, _ in partitions])
            for topic, partitions, _ in resp.topics
        ]
        fenced = [
            (topic, partition, code)
            for topic, partitions in errors
            for partition, code in partitions
            if code in FENCING_ERRORS
        ]
        if fenced:
            raise MembershipLost(
                f"the group refused the offsets of member {self._member.member_id} in generation"
                f" {self._member.generation}: {fenced} (its partitions belong to another worker)"
            )
        backoff: float | None = super().handle_response(_V0Shape(errors))
        return backoff


@dataclass(frozen=True, slots=True)
class _V0Shape:
    """A v3 answer in the shape aiokafka's handler reads (topic, [(partition, error code)])."""

    errors: list[tuple[str, list[tuple[int, int]]]]


def commit_with_generation(sender: Any, member: Callable[[], GroupMember]) -> None:
    """Have `sender` (a transactional AIOKafkaProducer's Sender) commit a transaction's offsets
    with TxnOffsetCommit v3, as `member()` of the group at the time of sending."""

    async def do_txn_offset_commit(
        offsets: Mapping[TopicPartition, OffsetAndMetadata], group_id: str
    ) -> None:
        if not offsets:
            return
        current = member()
        if not current.in_group:
            # The broker takes offsets without a generation unchecked (a consumer outside any
            # group commits that way), so they would commit even if another worker owns the
            # partitions now: a member that lost its membership is fenced here instead. aiokafka
            # forgets it before the revocation's commit (the group forgot the member: a pause or
            # a broker outage longer than the session timeout).
            raise MembershipLost(
                "the worker lost its membership of the group before its transaction's offsets were"
                " committed (its partitions may belong to another worker)"
            )
        try:
            node_id = await sender._find_coordinator(CoordinationType.GROUP, group_id)
        except Errors.GroupAuthorizationFailedError as exc:
            sender._txn_manager.error_transaction(exc)
            return
        await GenerationOffsetCommit(sender, offsets, group_id, current).do(node_id)

    # An instance attribute: the sender's transactional task calls self._do_txn_offset_commit
    # (streams/runtime/internals.py checks it and the handler's shape).
    sender._do_txn_offset_commit = do_txn_offset_commit


def fetch_stable_offsets(coordinator: Any) -> None:
    """Have `coordinator` (an AIOKafkaConsumer's GroupCoordinator) fetch committed offsets with
    `require_stable`; its own loop tries again while a transaction still holds one (retriable)."""

    async def do_fetch_commit_offsets(
        partitions: list[TopicPartition],
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        request = stable_offset_fetch(coordinator.group_id, list(partitions))
        response = await coordinator._send_req(request)
        try:
            return committed_offsets(response)
        except (Errors.NotCoordinatorError, Errors.CoordinatorNotAvailableError):
            coordinator.coordinator_dead()
            raise
        except UnstableOffsetCommit:
            log.info("waiting for a transaction that holds offsets of %s to end", partitions)
            raise

    # An instance attribute: fetch_committed_offsets calls self._do_fetch_commit_offsets and
    # retries retriable errors after its backoff (streams/runtime/internals.py checks both).
    coordinator._do_fetch_commit_offsets = do_fetch_commit_offsets
