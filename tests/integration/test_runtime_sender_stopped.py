"""A worker's transactional producer whose sender stopped on an error aiokafka does not handle,
against the real broker. Reliability scenario 13 (a 20 s broker pause) saw EndTxn answered with
such an error once: aiokafka's sender stopped, and the worker with it. Now the commit raises
SenderStopped (the runner survives it as it survives a fence), and the next producer opened
under the same transactional id finds the transaction settled, whichever way the broker took it:
the records and offsets a worker reads back are then consistent.

The error is injected into aiokafka's EndTxn handler, in this process: after the broker committed
(its answer lost to the client) or before the request is sent (the transaction still open).
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import UnknownError
from aiokafka.producer.sender import EndTxnHandler

from streams.runtime.producers import SenderStopped
from tests.integration import txn_fixtures as txn
from tests.reliability.outputs import committed_offsets

pytestmark = pytest.mark.integration


def _fail_end_txn(monkeypatch: pytest.MonkeyPatch, *, after_the_broker: bool) -> None:
    """EndTxn fails with an error aiokafka's handler does not expect."""

    def unexpected(self: Any, *args: Any) -> Any:
        raise UnknownError()

    name = "handle_response" if after_the_broker else "create_request"
    monkeypatch.setattr(EndTxnHandler, name, unexpected)


@pytest.mark.parametrize("after_the_broker", [True, False], ids=["committed", "never-sent"])
async def test_a_stopped_sender_leaves_the_transaction_settled_for_the_next_producer(
    kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch, after_the_broker: bool
) -> None:
    group = f"g-{unique}"
    out, source = await txn.out_and_source(kafka_bootstrap, unique, 1)
    async with txn.group_member(kafka_bootstrap, group, source) as consumer:
        producers = txn.per_worker(kafka_bootstrap, unique, lambda: txn.as_member(consumer))
        await producers.open([0])
        try:
            await producers.send(out, 0, [(b"k", b"in doubt", ())])
            with monkeypatch.context() as patch:
                _fail_end_txn(patch, after_the_broker=after_the_broker)
                with pytest.raises(SenderStopped, match="UnknownError"):
                    await producers.commit({0: {TopicPartition(source, 0): 5}}, begin=True)
        finally:
            await producers.close()
        # The worker's next producer, as at its rejoin: opening it waits for the broker to
        # settle the transaction (InitProducerId is refused while it is being completed).
        successor = txn.per_worker(kafka_bootstrap, unique, lambda: txn.as_member(consumer))
        await successor.open([0])
        try:
            records = await txn.read_committed(kafka_bootstrap, out, 1)
        finally:
            await successor.close()
    if after_the_broker:
        assert records == [(0, b"in doubt")]
        await txn.committed_soon(kafka_bootstrap, group, source, {0: 5})
    else:
        assert records == []
        assert await committed_offsets(kafka_bootstrap, group, source) == {}
