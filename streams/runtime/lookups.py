"""Lookups of the worker's Kafka clients: the coordinator lookups of its own producers, paced
after failures and tried again where aiokafka would stop the producer.

aiokafka 0.14 tries a lookup again
that finds no coordinator or a node not ready (the broker is down) every `retry_backoff_ms`,
which is 20 ms for our transactional producers: a commit caught by a broker outage looked the
coordinator up about 45 times a second, each with a metadata update and two connection attempts
(6% of a core per partition; reliability scenario 12 saw 2.3 s of CPU in a 24 s outage). It turns
a connection closed under a lookup (a broker stopping, even cleanly) into a fatal error of the
producer's sender instead: every later send and commit fails and the worker stops (aiokafka
#1151; reliability scenario 2 saw it once in a clean broker bounce). `pace_coordinator_lookups`
makes a lookup that follows failed ones wait `lookup_wait` (20 ms doubling to
`LOOKUP_BACKOFF_MAX_S`), and has a lost connection tried again like a node not ready, for up to
`LOOKUP_RETRY_S`; the transaction itself is untouched. A lookup by a client that knows no broker
yet is a node not ready too. aiokafka asserts instead ("Did we not perform bootstrap?"), and a
fresh producer can be there: a broker back from a pause (reliability scenario 13, a 20 s SIGSTOP)
answered the bootstrap Metadata request with no broker at all, which aiokafka takes as a
bootstrap; the assertion then stopped the worker as it opened its transactional producer for
the new assignment.

The metadata updates of the worker's consumer and producers wait after a failure
(sessionflow/metadata_backoff.py, shared with the enricher): without it, aiokafka's fetcher and
sender spun a core through a broker outage.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.errors import (
    CoordinatorNotAvailableError,
    KafkaConnectionError,
    NodeNotReadyError,
    RequestTimedOutError,
)

log = logging.getLogger(__name__)

# How long a coordinator lookup keeps trying after lost connections: the broker's default
# transaction timeout, after which the open transaction is aborted anyway.
LOOKUP_RETRY_S = 60.0
# The first wait after a failed lookup, as long as the transactional producers' retry backoff
# (producers.TXN_RETRY_BACKOFF_MS), doubling up to the longest.
LOOKUP_BACKOFF_FIRST_S = 0.02
LOOKUP_BACKOFF_MAX_S = 0.5


def lookup_wait(failures: int, first_s: float, most_s: float) -> float:
    """The wait before a coordinator lookup that follows `failures` failed ones in a row."""
    if failures <= 0:
        return 0.0
    return float(min(most_s, first_s * 2 ** min(failures - 1, 30)))


def pace_coordinator_lookups(
    client: Any,
    retry_s: float = LOOKUP_RETRY_S,
    first_s: float = LOOKUP_BACKOFF_FIRST_S,
    most_s: float = LOOKUP_BACKOFF_MAX_S,
) -> None:
    """Pace the coordinator lookups of `client` (a producer's own AIOKafkaClient) after failures,
    and have one that lost its connection tried again for up to `retry_s` (see the module's
    docstring), as is one by a client that knows no broker yet; any other failure, and a lost
    connection that outlasts `retry_s`, still raises."""
    lookup = client.coordinator_lookup
    failures = 0
    failing_since = 0.0

    async def coordinator_lookup(coordinator_type: Any, coordinator_key: str) -> int:
        nonlocal failures, failing_since
        loop = asyncio.get_running_loop()
        await asyncio.sleep(lookup_wait(failures, first_s, most_s))
        try:
            if not client.cluster.brokers():
                raise NodeNotReadyError("no broker known yet: the cluster listed none")
            node_id: int = await lookup(coordinator_type, coordinator_key)
        except (
            KafkaConnectionError,
            NodeNotReadyError,
            CoordinatorNotAvailableError,
            RequestTimedOutError,
        ) as err:
            if not failures:
                failing_since = loop.time()
            failures += 1
            if not isinstance(err, KafkaConnectionError):
                raise  # aiokafka's Sender tries these again, after a metadata update
            if loop.time() - failing_since >= retry_s:
                raise
            log.warning("coordinator lookup lost its connection; trying again: %r", err)
            raise NodeNotReadyError(f"coordinator lookup lost its connection: {err}") from err
        failures = 0
        return node_id

    # An instance attribute of the producer's own client: only its Sender's _find_coordinator
    # calls it (streams/runtime/internals.py checks what that retries).
    client.coordinator_lookup = coordinator_lookup
