"""The Kafka transport of the worker's app: Faust's aiokafka transport with our consumer,
transaction manager and producer (`Consumer`, `TransactionManager` and `Producer` are the
transport's documented places for them)."""

from __future__ import annotations

from typing import Any

from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from sessionflow.metadata_backoff import backoff_failed_metadata_updates
from streams.runtime.consumer import Consumer


class TransactionManager(faust_consumer.TransactionManager):
    """Exactly-once: the runner's producers instead of Faust's (streams/runtime/producers.py).

    Faust would open its own transactional producer per assigned partition, with the ids the
    runner's use: they would fence each other. The runner opens fresh ones for every assignment
    here, and commits and closes them itself (streams/runtime/consumer.py, 5).
    """

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP]
    ) -> None:
        runner: Any = self.app.runner  # type: ignore[attr-defined]  # streams.runtime.app.App
        await runner.producers.open(
            {tp.partition for tp in assigned if tp.topic == runner.sources.raw}
        )

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        return None  # the runner committed and closed its producers first

    async def commit(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        raise NotImplementedError("offsets are committed by the runner (streams/runtime/runner.py)")


class Producer(faust_aiokafka.Producer):
    """Faust's own producer (`app.producer`: the expiry ticks), whose client waits its retry
    backoff after a failed metadata update, as the runner's producers and the consumer do
    (sessionflow/metadata_backoff.py).

    Without it, a tick refused as not leader for its partition while the broker stopped left the
    sender asking for a leader in a loop that never waits: the worker spun a core for the whole
    outage (reliability scenario 12, 20.4 s of CPU in 20 s, 141,000 failed updates).
    """

    def _new_producer(self, transactional_id: str | None = None) -> Any:
        producer = super()._new_producer(transactional_id)
        backoff_failed_metadata_updates(producer.client)
        return producer


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    TransactionManager = TransactionManager
    Producer = Producer
