"""aiokafka's metadata updates, paced after a failure: the one aiokafka internal that the worker
and the enricher share.

aiokafka 0.14 has loops that ask for a metadata update, await it, and ask again without waiting:
its fetcher, for a partition without a leader (aiokafka #1155), and its sender, for a pending batch
whose partition has no leader. While the broker is down every update fails at once, so such a
loop spins a core for the whole outage. A single broker stopping cleanly reports its partitions
leaderless just before it goes, so a fetch or a send in flight at that moment is enough:
- the worker's consumer and producers: reliability scenario 12, 20 s of CPU in a 20 s outage,
  173,000 failed updates; Faust's own producer, the expiry ticks', 141,000 in 28 s;
- the enricher, its completed sessions flowing until the broker stopped: 15 s of CPU in 15 s,
  about 13,000 failed updates a second (reliability scenario 16).

`backoff_failed_metadata_updates` makes a client wait its retry backoff (`retry_backoff_ms`,
100 ms by default) after each failed update, as aiokafka's own retries do elsewhere. It replaces
the client's private `_metadata_update`, which its metadata synchronizer awaits: `fits` checks
that the installed aiokafka still has that shape, and each process refuses to start when it does
not (the worker through streams/runtime/compat.py, the enricher through `require`).
"""

from __future__ import annotations

import asyncio
import inspect
from importlib.metadata import version
from typing import Any, Final

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from sessionflow.errors import SessionflowError
from sessionflow.library_shape import source_says

VERIFIED_AIOKAFKA: Final = "0.14.0"  # pinned in pyproject.toml


class AiokafkaChanged(SessionflowError, RuntimeError):
    """The installed aiokafka no longer has the internal that the backoff replaces."""


def fits() -> bool:
    """The installed aiokafka's client awaits `self._metadata_update(cluster, topics)` for its
    updates, which returns whether it updated, and keeps `_retry_backoff` in seconds; consumers,
    producers and admin clients keep their client where `client_of` finds it."""
    update = vars(AIOKafkaClient).get("_metadata_update")
    return (
        callable(update)
        and list(inspect.signature(update).parameters)[1:] == ["cluster_metadata", "topics"]
        and source_says(
            getattr(AIOKafkaClient, "_md_synchronizer", None),
            "await self._metadata_update(self.cluster, topics)",
        )
        and source_says(AIOKafkaClient.__init__, "self._retry_backoff = retry_backoff_ms / 1000")
        and source_says(AIOKafkaConsumer.__init__, "self._client = AIOKafkaClient(")
        and source_says(AIOKafkaProducer.__init__, "self.client = AIOKafkaClient(")
        and source_says(AIOKafkaAdminClient.__init__, "self._client = AIOKafkaClient(")
    )


def require() -> None:
    """Refuse to run where the backoff would silently not apply."""
    if not fits():
        raise AiokafkaChanged(
            f"aiokafka {version('aiokafka')} no longer has the metadata update that"
            f" sessionflow/metadata_backoff.py paces (verified on aiokafka {VERIFIED_AIOKAFKA}):"
            " without it, a broker outage makes this process spin a core"
        )


def backoff_failed_metadata_updates(client: Any) -> None:
    """After a failed metadata update, `client` (an AIOKafkaClient) waits its retry backoff
    before the next can start: callers that loop on updates without waiting no longer spin."""
    update = client._metadata_update

    async def _metadata_update(cluster_metadata: Any, topics: Any) -> bool:
        updated: bool = await update(cluster_metadata, topics)
        if not updated:
            await asyncio.sleep(client._retry_backoff)
        return updated

    client._metadata_update = _metadata_update


def client_of(kafka: AIOKafkaConsumer | AIOKafkaProducer | AIOKafkaAdminClient) -> AIOKafkaClient:
    """The AIOKafkaClient that a consumer, producer or admin client talks to the cluster through."""
    found: AIOKafkaClient = kafka.client if isinstance(kafka, AIOKafkaProducer) else kafka._client
    return found
