"""One live worker per worker id: a worker that finds another under its own id stops.

With one transaction per worker, `SESSIONFLOW_WORKER_ID` names the worker's transactional id.
Two live workers under one id (a copied setting; a Deployment where the StatefulSet gives each
pod its name) fence each other without end: each opens its producer under the id as it
rejoins, which aborts the other's open transaction, which drops its work, rejoins and opens its
producer in turn. Nothing is lost or doubled, but nothing settles either: two such workers
fenced each other 20 times in 20 s, and 300 sessions took 21 s where they take 6.

Each of the worker's Kafka clients carries the id as its client id (streams/app.py), and the
group coordinator lists every member with its client id. At its first assignment the worker asks
for its group's members (DescribeGroups, aiokafka's admin client); another member under its
client id is a live worker: one killed and started again under its name is never in the same
generation as its successor, and a static member's successor replaces it. So the worker stops,
naming the other's host. Only a worker that has just started asks, so the one that ran first
keeps its partitions (two started together both stop, and the first one started again runs). The
question holds up that first assignment for a round trip or two, CHECK_LIMIT_S at most; anything
that fails it, or takes longer, leaves the worker running, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Member:
    """A member of the group as its coordinator describes it."""

    member_id: str
    client_id: str
    host: str


class NamesakeWorker(RuntimeError):
    """Another live worker runs under this worker's id."""


def namesakes(members: Iterable[Member], member_id: str, client_id: str) -> list[Member]:
    """The members other than `member_id` under `client_id`."""
    return [m for m in members if m.client_id == client_id and m.member_id != member_id]


def members_of(description: Mapping[str, Any]) -> list[Member]:
    """The members in a DescribeGroups answer (aiokafka's `to_object()` form) for one group."""
    (group,) = description["groups"]
    if group["error_code"]:
        raise KafkaError(f"DescribeGroups answered error code {group['error_code']}")
    return [
        Member(m["member_id"], m["client_id"], m["client_host"].lstrip("/"))
        for m in group["members"]
    ]


# The longest the first assignment waits for the answer (it takes milliseconds).
CHECK_LIMIT_S = 5.0


async def refuse_namesakes(
    group_id: str,
    member_id: str,
    client_id: str,
    bootstrap_servers: str,
    security: Mapping[str, Any],
) -> None:
    """Raise NamesakeWorker when the group holds a member other than `member_id` under
    `client_id`, this worker's."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id=client_id, **security
    )
    try:
        async with asyncio.timeout(CHECK_LIMIT_S):
            await admin.start()
            (answer,) = await admin.describe_consumer_groups([group_id])
        others = namesakes(members_of(answer.to_object()), member_id, client_id)
    except (KafkaError, OSError, TimeoutError) as exc:
        log.warning("could not look for another worker under this worker's id (%r)", exc)
        return
    finally:
        await admin.close()
    if others:
        raise NamesakeWorker(
            f"another live worker in group {group_id} runs under this worker's id ({client_id}"
            f" on {', '.join(sorted({m.host for m in others}))}): two workers under one"
            " SESSIONFLOW_WORKER_ID fence each other's transactions without end. Give each"
            " worker its own id (in Kubernetes, the StatefulSet's pod name); this one stops."
        )
