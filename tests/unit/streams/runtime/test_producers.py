"""streams.runtime.producers: a transaction takes the group's offsets partition once it holds
data; transactional requests are tried again sooner than aiokafka's default; a fence, or a sender
stopped on another error, is raised as such."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    IllegalOperation,
    KafkaError,
    ProducerFenced,
    UnknownError,
)
from aiokafka.producer.transaction_manager import TransactionManager

from streams.runtime.producers import (
    TXN_RETRY_BACKOFF_MS,
    Producers,
    SenderStopped,
    WorkerTransaction,
    add_offsets_early,
    fenced_as_such,
    skip_settled_retries,
)
from streams.runtime.worker_txn import GroupMember


def _in_transaction() -> TransactionManager:
    """aiokafka's own transaction manager, with its producer id, in an open transaction."""
    txn = TransactionManager("t-0", 60_000)
    add_offsets_early(txn, "group")
    txn.set_pid_and_epoch(1, 0)
    txn.begin_transaction()
    return txn


def _holds_data(txn: TransactionManager) -> None:
    tp = TopicPartition("out", 0)
    txn.maybe_add_partition_to_txn(tp)
    txn.partition_added(tp)


async def test_an_open_transaction_without_data_takes_no_offsets_partition() -> None:
    assert _in_transaction().consumer_group_to_add() is None


async def test_a_transaction_takes_it_after_its_first_data_partition_once() -> None:
    txn = _in_transaction()
    _holds_data(txn)
    assert txn.consumer_group_to_add() == "group"
    txn.consumer_group_added("group")
    assert txn.consumer_group_to_add() is None
    assert txn.offsets_to_commit() is None  # nothing to commit before the offsets are sent


async def test_offsets_sent_first_take_aiokafkas_own_path() -> None:
    txn = _in_transaction()
    txn.add_offsets_to_txn({TopicPartition("in", 0): 5}, "group")
    assert txn.consumer_group_to_add() == "group"


async def test_a_committing_transaction_takes_nothing_more() -> None:
    txn = _in_transaction()
    _holds_data(txn)
    txn.committing_transaction()
    assert txn.consumer_group_to_add() is None


async def test_the_next_transaction_starts_without_it() -> None:
    txn = _in_transaction()
    _holds_data(txn)
    txn.consumer_group_added("group")
    txn.committing_transaction()
    txn.complete_transaction()
    txn.begin_transaction()
    assert txn.consumer_group_to_add() is None
    _holds_data(txn)
    assert txn.consumer_group_to_add() == "group"


def test_transactional_producers_need_the_group_whose_offsets_they_commit() -> None:
    with pytest.raises(ValueError, match="group_id"):
        Producers(bootstrap_servers="127.0.0.1:9", client_id="c", transactional_id=str)


def _partition_scope() -> Producers:
    """Producers with a transaction per partition (and the shared one, for transactional_id None)."""
    return Producers(
        bootstrap_servers="127.0.0.1:9",
        client_id="w",
        transactional_id=lambda partition: f"app-group-{partition}",
        group_id="g",
    )


async def test_transactional_producers_retry_after_the_short_backoff_the_shared_one_not() -> None:
    producers = _partition_scope()
    transactional = producers._new("app-group-0")
    shared = producers._new(None)
    try:
        assert transactional._sender._retry_backoff == TXN_RETRY_BACKOFF_MS / 1000
        assert shared._sender._retry_backoff == 0.1  # aiokafka's default, for everything else
    finally:
        await transactional.stop()
        await shared.stop()


async def test_a_failed_metadata_update_of_either_producer_waits_its_retry_backoff() -> None:
    """No broker known: the update fails at once, then waits (lookups.py: the sender's loop)."""
    producers = _partition_scope()
    for transactional_id, backoff_s in (("app-group-0", TXN_RETRY_BACKOFF_MS / 1000), (None, 0.1)):
        producer = producers._new(transactional_id)
        try:
            started = time.monotonic()
            assert await producer.client._metadata_update(producer.client.cluster, None) is False
            assert time.monotonic() - started >= backoff_s
        finally:
            await producer.stop()


def _worker_scope(transactional_id: Any = None) -> Producers:
    return Producers(
        bootstrap_servers="127.0.0.1:9",
        client_id="w",
        transactional_id=transactional_id,
        group_id="g",
        worker=WorkerTransaction(
            transactional_id="app-worker-a",
            member=lambda: GroupMember(generation=1, member_id="m"),
            timeout_ms=10_000,
        ),
    )


def test_one_transaction_per_worker_is_one_or_the_other_and_names_its_scope() -> None:
    assert _worker_scope().transaction_scope == "worker"
    assert _worker_scope().transactional
    per_partition = Producers(
        bootstrap_servers="127.0.0.1:9", client_id="c", transactional_id=str, group_id="g"
    )
    assert per_partition.transaction_scope == "partition"
    shared = Producers(bootstrap_servers="127.0.0.1:9", client_id="c", transactional_id=None)
    assert shared.transaction_scope == "none"
    with pytest.raises(ValueError, match="not both"):
        _worker_scope(transactional_id=str)


async def test_the_worker_producer_commits_with_the_generation_and_its_own_timeout() -> None:
    producer = _worker_scope()._new("app-worker-a")
    try:
        assert producer._txn_manager.transactional_id == "app-worker-a"
        assert producer._txn_manager.transaction_timeout_ms == 10_000
        # The sender's own method, replaced on the instance (streams/runtime/worker_txn.py).
        assert "_do_txn_offset_commit" in vars(producer._sender)
        assert producer._sender._retry_backoff == TXN_RETRY_BACKOFF_MS / 1000
    finally:
        await producer.stop()


async def test_the_worker_producer_is_needed_open_before_a_send() -> None:
    with pytest.raises(RuntimeError, match="not open"):
        await _worker_scope().send("out", 0, [(b"k", b"v", ())])


def _stopped_sender(error: BaseException | None) -> Any:
    """A producer whose sender task ended with `error` (None: still running)."""
    task: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if error is not None:
        task.set_exception(error)
    return SimpleNamespace(
        _sender=SimpleNamespace(sender_task=task), _txn_manager=None, _message_accumulator=None
    )


# An accumulator without batches (aiokafka's MessageAccumulator: those queued, those sent).
NO_BATCHES = SimpleNamespace(_batches={}, _pending_batches=set())


async def test_a_send_after_a_fence_raises_the_fence_not_aiokafkas_state_error() -> None:
    fence = ProducerFenced()
    with pytest.raises(ProducerFenced) as raised, fenced_as_such(_stopped_sender(fence)):
        raise IllegalOperation("Can't send messages while not in transaction")
    assert raised.value is fence


async def test_an_error_while_the_sender_runs_raises_as_it_is() -> None:
    with pytest.raises(IllegalOperation), fenced_as_such(_stopped_sender(None)):
        raise IllegalOperation("Not in the middle of a transaction")
    with pytest.raises(KafkaError), fenced_as_such(_stopped_sender(None)):
        raise KafkaError("a send of its own failed")


@pytest.mark.parametrize(
    "raised",
    [
        IllegalOperation("Not in the middle of a transaction"),  # a later send or commit
        KafkaError("Unexpected error during batch delivery"),  # the commit it stopped in
    ],
)
async def test_a_sender_stopped_on_another_error_raises_sender_stopped(
    raised: BaseException,
) -> None:
    # What EndTxn's unexpected answer left after a broker pause (reliability scenario 13).
    cause = UnknownError()
    with pytest.raises(SenderStopped) as stopped, fenced_as_such(_stopped_sender(cause)):
        raise raised
    assert isinstance(stopped.value, ProducerFenced)  # survived like a fence (runner.py)
    assert stopped.value.__cause__ is raised
    assert "UnknownError" in str(stopped.value)


@contextlib.contextmanager
def loop_reports() -> Iterator[list[str]]:
    """What the running loop's exception handler gets within the block, which collects garbage
    as it ends: a failed future that nobody looked at is reported then."""
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))
    try:
        yield reported
        gc.collect()
    finally:
        loop.set_exception_handler(None)


async def test_batches_failed_by_a_fence_are_not_reported_as_never_retrieved() -> None:
    loop = asyncio.get_running_loop()
    with loop_reports() as reported:
        batches: list[asyncio.Future[Any]] = []

        async def send_batch(batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
            batches.append(loop.create_future())
            return batches[-1]

        unstarted = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
        producer = SimpleNamespace(create_batch=unstarted.create_batch, send_batch=send_batch)
        sent = await Producers._send(producer, "out", 0, [(b"k", b"v" * 100, ())] * 3)
        await unstarted.stop()
        assert [count for _, count in sent] == [3]
        unseen = loop.create_future()  # what a batch was before: nobody looks at its failure
        for failed in [*batches, unseen]:
            failed.set_exception(ProducerFenced())  # as the stopped sender fails its batches
        await asyncio.sleep(0)  # the done callbacks run
        sent.clear()
        batches.clear()
        del failed, unseen
    assert reported == ["Future exception was never retrieved"]


async def test_the_transaction_end_a_fence_failed_is_not_reported_as_never_retrieved() -> None:
    with loop_reports() as reported:
        fence = ProducerFenced()
        txn = _in_transaction()
        txn.fatal_error(fence)  # what the stopped sender does: nobody awaits the end any more
        producer = _stopped_sender(fence)
        producer._txn_manager, producer._message_accumulator = txn, NO_BATCHES
        with pytest.raises(ProducerFenced), fenced_as_such(producer):
            raise fence  # as send_offsets_to_transaction raises it
        del txn, producer
    assert reported == []


def _fail_all(txn: TransactionManager, stopped: asyncio.Future[Any]) -> None:
    """What the sender's done-callback does to the transaction."""
    txn.fatal_error(stopped.exception())


async def test_an_end_failed_again_after_the_fence_was_seen_is_not_reported_either() -> None:
    # The sender's handler failed the transaction, the sender stopped, and its own done-callback
    # (_fail_all: fatal_error, which fails a new end) had not run when the next send saw it.
    loop = asyncio.get_running_loop()
    with loop_reports() as reported:
        fence = ProducerFenced()
        txn = _in_transaction()
        txn.error_transaction(fence)
        task: asyncio.Future[Any] = loop.create_future()
        task.set_exception(fence)
        task.add_done_callback(partial(_fail_all, txn))
        producer = SimpleNamespace(
            _sender=SimpleNamespace(sender_task=task),
            _txn_manager=txn,
            _message_accumulator=NO_BATCHES,
        )
        with pytest.raises(ProducerFenced), fenced_as_such(producer):
            raise IllegalOperation("Can't send messages while not in transaction")
        first_end = txn.wait_for_transaction_end()
        await asyncio.sleep(0)  # the callbacks run: fatal_error's new end, then the mark
        assert txn.wait_for_transaction_end() is not first_end
        del txn, producer, task, first_end, fence  # its traceback holds the producer
    assert reported == []


async def test_batches_the_stopped_sender_had_not_sent_are_not_reported_as_never_retrieved() -> (
    None
):
    """The sender fails the drain waiter of each batch still queued (or taken back to retry) with
    its error; nothing awaits it after a fence. Reliability scenario 15 logged four such reports,
    a worker cut off from the broker mid-send."""
    loop = asyncio.get_running_loop()
    with loop_reports() as reported:
        unstarted = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
        accumulator = unstarted._message_accumulator
        builder = unstarted.create_batch()
        builder.append(key=b"k", value=b"v", timestamp=None)
        queued = await accumulator.add_batch(builder, TopicPartition("out", 0), timeout=1)
        queued.add_done_callback(lambda f: f.exception())  # as Producers._send watches it
        fence, txn = ProducerFenced(), _in_transaction()
        task: asyncio.Future[Any] = loop.create_future()
        task.set_exception(fence)
        accumulator.fail_all(fence)  # what the sender's done-callback (_fail_all) does
        txn.fatal_error(fence)
        producer = SimpleNamespace(
            _sender=SimpleNamespace(sender_task=task),
            _txn_manager=txn,
            _message_accumulator=accumulator,
        )
        with pytest.raises(ProducerFenced), fenced_as_such(producer):
            raise fence  # as send_offsets_to_transaction raises it
        await unstarted.stop()
        del txn, producer, task, fence, accumulator, queued, unstarted
    assert reported == []


async def test_a_retry_of_a_batch_the_stopped_sender_failed_ends_as_cancelled() -> None:
    """A produce request failed for a retriable reason hands its batches back after the backoff;
    when the sender stopped meanwhile (reliability scenario 15: a worker cut off mid-send), the
    batch had failed and left the pending set, and aiokafka's reenqueue raised KeyError. The
    request's task now ends as cancelled, which the loop does not report."""
    unstarted = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    accumulator = unstarted._message_accumulator
    skip_settled_retries(accumulator)
    tp = TopicPartition("out", 0)

    async def in_flight() -> tuple[Any, asyncio.Future[Any]]:
        builder = unstarted.create_batch()
        builder.append(key=b"k", value=b"v", timestamp=None)
        sent = await accumulator.add_batch(builder, tp, timeout=1)
        return accumulator._pop_batch(tp), sent  # as drain_by_nodes hands it to a request

    settled, sent = await in_flight()
    accumulator.fail_all(ProducerFenced())  # the sender stopped during the backoff
    await asyncio.sleep(0)  # the failed batch leaves the pending set

    async def retry() -> None:  # SendProduceReqHandler.do after its backoff
        accumulator.reenqueue(settled)

    with loop_reports() as reported:
        retrying = asyncio.create_task(retry())
        await asyncio.sleep(0)
        assert retrying.cancelled()
        del retrying
    assert reported == []
    assert tp not in accumulator._batches
    assert isinstance(sent.exception(), ProducerFenced)

    accumulator._exception = None  # a sender still running: its retry goes back in the queue
    unsettled, _ = await in_flight()
    accumulator.reenqueue(unsettled)
    assert list(accumulator._batches[tp]) == [unsettled]
    await unstarted.stop()
