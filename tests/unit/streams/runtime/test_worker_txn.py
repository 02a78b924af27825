"""streams.runtime.worker_txn: offsets committed with the group's generation (TxnOffsetCommit v3),
a refused member taken as fenced, and committed offsets read stable (OffsetFetch v7)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka import errors as Errors
from aiokafka.structs import OffsetAndMetadata

from streams.runtime.worker_txn import (
    ILLEGAL_GENERATION,
    OFFSET_FETCH,
    TXN_OFFSET_COMMIT,
    UNKNOWN_MEMBER_ID,
    UNSTABLE_OFFSET_COMMIT,
    GroupMember,
    MembershipLost,
    UnstableOffsetCommit,
    commit_with_generation,
    committed_offsets,
    fetch_stable_offsets,
    stable_offset_fetch,
    txn_offset_commit,
)

MEMBER = GroupMember(generation=7, member_id="worker-a-1234")
IN0, IN1 = TopicPartition("in", 0), TopicPartition("in", 1)


def _roundtrip(struct: Any) -> Any:
    """Encoded as it goes on the wire, decoded with the same layout."""
    return type(struct).decode(io.BytesIO(struct.encode()))


def _commit_request(offsets: dict[TopicPartition, OffsetAndMetadata]) -> Any:
    return txn_offset_commit(
        transactional_id="app-worker-a",
        group_id="app",
        producer_id=42,
        producer_epoch=3,
        member=MEMBER,
        offsets=offsets,
    )


def test_the_offsets_go_with_the_member_and_its_generation() -> None:
    request = _commit_request({IN1: OffsetAndMetadata(9, ""), IN0: OffsetAndMetadata(5, "m")})
    sent = _roundtrip(request.prepare({28: (0, 5)}))
    assert type(sent) is TXN_OFFSET_COMMIT.request_struct
    assert (sent.transactional_id, sent.group_id, sent.producer_id, sent.producer_epoch) == (
        "app-worker-a",
        "app",
        42,
        3,
    )
    assert (sent.generation_id, sent.member_id, sent.group_instance_id) == (
        7,
        MEMBER.member_id,
        None,
    )
    assert [(t, [(p, o, m) for p, o, _, m, _ in ps]) for t, ps, _ in sent.topics] == [
        ("in", [(0, 5, "m"), (1, 9, "")])
    ]


def test_a_broker_without_v3_is_refused_rather_than_sent_an_unfenced_commit() -> None:
    request = _commit_request({})
    with pytest.raises(NotImplementedError):
        request.prepare({28: (0, 2)})


def test_offsets_are_fetched_stable() -> None:
    sent = _roundtrip(stable_offset_fetch("app", [IN0, IN1]).prepare({9: (0, 9)}))
    assert type(sent) is OFFSET_FETCH.request_struct
    assert sent.require_stable is True
    assert [(t, ps) for t, ps, _ in sent.topics] == [("in", [0, 1])]


def _fetched(*partitions: tuple[int, int, int], error_code: int = 0) -> Any:
    """An OffsetFetch v7 answer for topic "in": (partition, offset, error code) each."""
    answer = OFFSET_FETCH.response_struct(
        0,
        [("in", [(p, offset, -1, "", code, {}) for p, offset, code in partitions], {})],
        error_code,
        {},
    )
    return _roundtrip(answer)


def test_committed_offsets_leave_out_partitions_without_one() -> None:
    assert committed_offsets(_fetched((0, 5, 0), (1, -1, 0))) == {IN0: OffsetAndMetadata(5, "")}


def test_an_offset_a_transaction_still_holds_is_asked_for_again() -> None:
    with pytest.raises(UnstableOffsetCommit) as unstable:
        committed_offsets(_fetched((0, 5, 0), (1, -1, UNSTABLE_OFFSET_COMMIT)))
    assert unstable.value.retriable  # aiokafka's fetch loop waits its backoff and asks again


def test_other_fetch_errors_raise_as_aiokafka_knows_them() -> None:
    with pytest.raises(Errors.GroupAuthorizationFailedError):
        committed_offsets(_fetched((0, 5, Errors.GroupAuthorizationFailedError.errno)))
    with pytest.raises(Errors.NotCoordinatorError):
        committed_offsets(_fetched(error_code=Errors.NotCoordinatorError.errno))
    unknown_topic = Errors.UnknownTopicOrPartitionError.errno
    assert committed_offsets(_fetched((0, 5, unknown_topic))) == {}


class FakeCoordinator:
    """An aiokafka GroupCoordinator's request path, answering as scripted."""

    def __init__(self, *answers: Any) -> None:
        self.group_id = "app"
        self.answers = list(answers)
        self.requests: list[Any] = []
        self.dead = 0

    async def _send_req(self, request: Any) -> Any:
        self.requests.append(request.prepare({9: (0, 9)}))
        return self.answers.pop(0)

    def coordinator_dead(self) -> None:
        self.dead += 1


async def test_the_coordinator_fetches_stable_offsets_until_the_transaction_ended() -> None:
    coordinator = FakeCoordinator(
        _fetched((0, -1, UNSTABLE_OFFSET_COMMIT)),
        _fetched(error_code=Errors.NotCoordinatorError.errno),
        _fetched((0, 5, 0)),
    )
    fetch_stable_offsets(coordinator)
    fetch: Any = coordinator._do_fetch_commit_offsets  # type: ignore[attr-defined]
    with pytest.raises(UnstableOffsetCommit):
        await fetch([IN0])
    with pytest.raises(Errors.NotCoordinatorError):
        await fetch([IN0])
    assert coordinator.dead == 1  # found again before the next try
    assert await fetch([IN0]) == {IN0: OffsetAndMetadata(5, "")}
    assert all(r.require_stable for r in coordinator.requests)


class FakeTxnManager:
    transactional_id = "app-worker-a"
    producer_id = 42
    producer_epoch = 3

    def __init__(self) -> None:
        self.committed: list[tuple[TopicPartition, int, str]] = []
        self.errors: list[BaseException] = []

    def offset_committed(self, tp: TopicPartition, offset: int, group_id: str) -> None:
        self.committed.append((tp, offset, group_id))

    def error_transaction(self, exc: BaseException) -> None:
        self.errors.append(exc)


class FakeClient:
    def __init__(self, *codes: int) -> None:
        self.codes = list(codes)
        self.sent: list[Any] = []

    async def send(self, node_id: int, request: Any, group: Any = None) -> Any:
        self.sent.append(request.prepare({28: (0, 5)}))
        code = self.codes.pop(0)
        return _roundtrip(TXN_OFFSET_COMMIT.response_struct(0, [("in", [(0, code, {})], {})], {}))


class FakeSender:
    """The parts of an aiokafka Sender a TxnOffsetCommit handler uses."""

    def __init__(self, *codes: int) -> None:
        self._retry_backoff = 0.0
        self._txn_manager = FakeTxnManager()
        self.client = FakeClient(*codes)
        self.dead: list[Any] = []

    async def _find_coordinator(self, coordinator_type: Any, coordinator_key: str) -> int:
        return 1

    def _coordinator_dead(self, coordinator_type: Any) -> None:
        self.dead.append(coordinator_type)


async def test_a_commit_names_the_member_as_it_is_when_sent() -> None:
    sender = FakeSender(0)
    members = iter([MEMBER, GroupMember(generation=8, member_id="later")])
    commit_with_generation(sender, lambda: next(members))
    await sender._do_txn_offset_commit({IN0: OffsetAndMetadata(5, "")}, "app")  # type: ignore[attr-defined]
    [sent] = sender.client.sent
    assert (sent.generation_id, sent.member_id) == (7, MEMBER.member_id)
    assert sender._txn_manager.committed == [(IN0, 5, "app")]


@pytest.mark.parametrize("code", [ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID])
async def test_a_member_the_group_refuses_is_a_fenced_producer(code: int) -> None:
    sender = FakeSender(code)
    commit_with_generation(sender, lambda: MEMBER)
    with pytest.raises(MembershipLost) as fenced:
        await sender._do_txn_offset_commit({IN0: OffsetAndMetadata(5, "")}, "app")  # type: ignore[attr-defined]
    assert "generation 7" in str(fenced.value)
    assert isinstance(fenced.value, Errors.ProducerFenced)  # aiokafka's sender stops on it
    assert sender._txn_manager.committed == []


@pytest.mark.parametrize(
    "forgotten",
    [GroupMember(generation=-1, member_id=""), GroupMember(generation=-1, member_id="m-1")],
)
async def test_offsets_are_never_sent_without_a_generation(forgotten: GroupMember) -> None:
    # The broker would take them unchecked, whoever owns the partitions now.
    sender = FakeSender(0)
    commit_with_generation(sender, lambda: forgotten)
    with pytest.raises(MembershipLost, match="lost its membership"):
        await sender._do_txn_offset_commit({IN0: OffsetAndMetadata(5, "")}, "app")  # type: ignore[attr-defined]
    assert sender.client.sent == []
    assert sender._txn_manager.committed == []


async def test_a_coordinator_that_moved_is_found_again_as_aiokafka_does() -> None:
    sender = FakeSender(Errors.NotCoordinatorError.errno, 0)
    commit_with_generation(sender, lambda: MEMBER)
    offsets = {IN0: OffsetAndMetadata(5, "")}
    await sender._do_txn_offset_commit(offsets, "app")  # type: ignore[attr-defined]
    assert sender.dead  # the group's coordinator, looked up again by the next try
    assert sender._txn_manager.committed == []
    await sender._do_txn_offset_commit(offsets, "app")  # type: ignore[attr-defined]
    assert sender._txn_manager.committed == [(IN0, 5, "app")]
