"""The Faust app class of the worker: Faust's App on sessionflow's transport."""

from __future__ import annotations

from typing import cast

import faust
from faust.types import TransportT
from faust.types.enums import ProcessingGuarantee

from streams.runtime.consumer import Consumer
from streams.runtime.transport import Transport


class App(faust.App):
    """A Faust App whose consumer is streams.runtime's (Faust picks a transport by URL scheme
    only; building it here keeps the choice in code, with no process-wide registry)."""

    def _new_transport(self) -> TransportT:
        return cast(TransportT, Transport(self.conf.broker_consumer, self))

    @property
    def in_transaction(self) -> bool:
        """Exactly-once, from the settings alone.

        Faust's is a cached property that is true only once the worker has started (`in_worker`):
        read before that (building the consumer for the start-up check, registering the
        processor), it stays false for the process, and the whole worker silently runs
        at-least-once. This app is only ever a worker's.
        """
        guarantee: object = self.conf.processing_guarantee
        return guarantee == ProcessingGuarantee.EXACTLY_ONCE

    @property
    def runtime_consumer(self) -> Consumer:
        """The consumer, typed as ours."""
        return cast(Consumer, self.consumer)
