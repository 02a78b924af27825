"""A tiny Faust worker that opens, on demand, the two ways faust-streaming 0.15.3 loses records
at the end of recovery (issue 17; streams/runtime/consumer.py explains both).

WINDOW_FAULT=queued_during_seek: recovery seeks the stream partitions while the flow runs, then
clears every stream's queue as it resumes the flow. This worker's consumer returns from the seek
only once every record of the source was handed to the agent's queue (or after WINDOW_HOLD_S),
and its agent holds the first event until recovery is complete, so the rest wait in the queue
when it is cleared.

With streams.runtime the source goes to a processor (Relay) through the runtime's runner, as in
the worker; with Faust, to an agent.

WINDOW_FAULT=dropped_before_seek: Faust drops fetched records of partitions it is not ready for,
and counts on the seek to read them again (an in-flight fetch drains them when recovery leaves no
partition active). This worker's consumer moves the source's position past its records before the
seek, as such a drained-and-dropped fetch does; the source has no committed offset.

Run as a real worker: `python tests/integration/recovery_window_app.py worker`, configured by
WINDOW_* variables; WINDOW_CONSUMER is `faust` (Faust's own consumer) or `sessionflow`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, TransportT

from streams.runtime.app import App as RuntimeApp
from streams.runtime.consumer import Consumer as RuntimeConsumer
from streams.runtime.producers import PLAINTEXT
from streams.runtime.runner import Sources
from streams.runtime.transport import Transport as RuntimeTransport
from streams.runtime.unit import Unit

SOURCE = os.environ["WINDOW_SOURCE"]
LAST_OFFSET = int(os.environ["WINDOW_LAST_OFFSET"])
HOLD_S = float(os.environ["WINDOW_HOLD_S"])
FAULT = os.environ["WINDOW_FAULT"]
log = logging.getLogger("recovery_window")


def holding(base: type[Any]) -> type[Any]:
    class HoldingConsumer(base):  # type: ignore[misc]  # a class chosen at run time
        async def perform_seek(self) -> None:
            tp = TP(SOURCE, 0)
            if FAULT == "dropped_before_seek":
                log.warning("window: position %s before the seek", await self.position(tp))
                self._thread.seek(tp, LAST_OFFSET + 1)
                await super().perform_seek()
                log.warning("window: position %s after the seek", await self.position(tp))
                return
            generation = self.app.consumer_generation_id
            await super().perform_seek()
            deadline = time.monotonic() + HOLD_S
            # Polls Faust's own read offset: no event fires when the drain loop hands a record over.
            while time.monotonic() < deadline and (self._read_offset.get(tp) or -1) < LAST_OFFSET:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            # The position tells where the records came from (a fetch after the seek leaves it past
            # them); the rest, what a window that did not open looked like (not explained yet).
            log.warning(
                "window: read offset %s when the seek returned (position %s, flow control %s,"
                " consumer flow %s, generation %s then %s)",
                self._read_offset.get(tp),
                await self.position(tp),
                "active" if self.app.flow_control.is_active() else "suspended",
                "active" if self.flow_active else "stopped",
                generation,
                self.app.consumer_generation_id,
            )

    return HoldingConsumer


class FaustTransport(faust_aiokafka.Transport):
    Consumer = holding(faust_aiokafka.Consumer)


class SessionflowTransport(RuntimeTransport):
    Consumer = holding(RuntimeConsumer)


class FaustWindowApp(faust.App):
    def _new_transport(self) -> TransportT:
        return cast(TransportT, FaustTransport(self.conf.broker_consumer, self))


class SessionflowWindowApp(RuntimeApp):
    def _new_transport(self) -> TransportT:
        return cast(TransportT, SessionflowTransport(self.conf.broker_consumer, self))


APPS: dict[str, type[faust.App]] = {"faust": FaustWindowApp, "sessionflow": SessionflowWindowApp}
AppClass = APPS[os.environ["WINDOW_CONSUMER"]]
app = AppClass(
    os.environ["WINDOW_APP_ID"],
    broker=f"kafka://{os.environ['WINDOW_BOOTSTRAP']}",
    store="memory://",
    datadir=os.environ["WINDOW_DATADIR"],
    web_enabled=False,
    topic_partitions=1,
    processing_guarantee=os.environ["WINDOW_GUARANTEE"],
    topic_allow_declare=True,
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=0.5,
)
SINK = os.environ["WINDOW_SINK"]


class Relay:
    """The runtime's processor: each source record's offset to the sink, counted in the table."""

    def process(self, unit: Unit, raw: Sequence[Any], ticks: Sequence[Any]) -> None:
        for record in raw:
            seen = int(unit.get(b"processed") or b"0")
            unit.put(b"processed", str(seen + 1).encode())
            unit.send(SINK, b"offset", str(record.offset).encode())

    def forget(self) -> None:
        return None


if isinstance(app, RuntimeApp):
    app.serve(
        Relay(),
        sources=Sources(raw=SOURCE, ticks=f"{SOURCE}.ticks"),
        table=app.Table("seen", partitions=1, key_type=bytes, value_type=bytes),
        partitions=1,
        bootstrap_servers=os.environ["WINDOW_BOOTSTRAP"],
        security=PLAINTEXT,
        on_held_back=lambda reason, count: None,
        on_commit=lambda seconds, partitions: None,
    )
else:
    RAW: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
    RAW |= {"key_serializer": "raw", "value_serializer": "raw"}
    sink = app.topic(SINK, **RAW)
    seen = app.Table("seen", default=int, partitions=1)

    @app.agent(app.topic(SOURCE, **RAW))
    async def relay(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async for event in stream.events():
            # The first event waits here; the others wait in the queue until recovery completes.
            await app.tables.recovery.completed.wait()  # type: ignore[attr-defined]
            seen[b"processed"] += 1
            await sink.send(key=b"offset", value=str(event.message.offset).encode())
            yield None


if __name__ == "__main__":
    app.main()
