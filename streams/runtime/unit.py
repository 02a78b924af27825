"""A unit of work: one partition's share of a fetched batch, applied in one step.

The processor sees a `Unit` per partition (`streams/runtime/__init__.py` describes the whole
interface): it reads and changes the table and sends outputs, and nothing reaches Kafka or the
local store while it runs. The runtime then ends the unit in one step, with no await per record:

- exactly-once: the outputs and the table's changes (one changelog record per changed key, the
  last value) go to the partition's transactional producer as one record batch per topic; the
  local store takes the changes in one write batch; the offsets follow in the transaction at the
  next commit, which happens only between units (streams/runtime/gate.py).
- at-least-once: the outputs go first and are acknowledged by Kafka before the table records the
  step (changelog, then the store): a crash in between repeats an output, never loses one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Headers = Sequence[tuple[str, bytes]]


class PartitionStore(Protocol):
    """One partition of the table's local store (streams/runtime/table.py)."""

    def get(self, key: bytes) -> bytes | None: ...
    def items(self) -> Iterator[tuple[bytes, bytes]]: ...
    def write(self, changes: Mapping[bytes, bytes | None]) -> None: ...
    def set_persisted_offset(self, offset: int) -> None: ...
    def clear(self) -> None: ...


class Sender(Protocol):
    """Where a unit's records go: the partition's producer (streams/runtime/producers.py)."""

    async def send(
        self,
        topic: str,
        partition: int,
        records: Sequence[tuple[bytes | None, bytes | None, Headers]],
    ) -> list[tuple[asyncio.Future[Any], int]]: ...


@dataclass
class Unit:
    """The processor's view of one partition while it applies a batch."""

    partition: int
    store: PartitionStore
    changes: dict[bytes, bytes | None] = field(default_factory=dict)
    # topic -> records, in the order sent
    outputs: dict[str, list[tuple[bytes | None, bytes | None, Headers]]] = field(
        default_factory=dict
    )

    def get(self, key: bytes) -> bytes | None:
        """The table's value for `key`, this unit's own changes included."""
        if key in self.changes:
            return self.changes[key]
        return self.store.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        """Change the table (None deletes); recorded in the changelog when the unit ends."""
        self.changes[key] = value

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> None:
        """Send a record to `topic`, on this unit's partition, when the unit ends."""
        self.outputs.setdefault(topic, []).append((key, value, headers))

    def scan(self) -> Iterator[tuple[bytes, bytes]]:
        """The partition's whole table as the store holds it when the first entry is read (a
        snapshot: neither this unit's changes nor later units' are in it). It may be read on
        across later units of the partition, until the partitions move."""
        return self.store.items()


@dataclass(frozen=True, slots=True)
class Ended:
    """What ending a unit leaves for the commit: the changelog's batches (future, records)."""

    changelog: list[tuple[asyncio.Future[Any], int]]


async def end_exactly_once(unit: Unit, sender: Sender, changelog_topic: str) -> Ended:
    """Queue the unit's outputs and changelog in the partition's transaction; write the store."""
    for topic, records in unit.outputs.items():
        await sender.send(topic, unit.partition, records)
    return await _table_step(unit, sender, changelog_topic)


async def end_at_least_once(unit: Unit, sender: Sender, changelog_topic: str) -> Ended:
    """Outputs acknowledged first, then the table's step (changelog, store)."""
    sent: list[tuple[asyncio.Future[Any], int]] = []
    for topic, records in unit.outputs.items():
        sent += await sender.send(topic, unit.partition, records)
    if sent:
        await asyncio.gather(*(future for future, _ in sent))
    return await _table_step(unit, sender, changelog_topic)


async def _table_step(unit: Unit, sender: Sender, changelog_topic: str) -> Ended:
    """Queue the unit's table changes on the changelog and write them to the local store."""
    changelog: list[tuple[asyncio.Future[Any], int]] = []
    if unit.changes:
        records = [(key, value, ()) for key, value in unit.changes.items()]
        changelog = await sender.send(changelog_topic, unit.partition, records)
        unit.store.write(unit.changes)
    return Ended(changelog)
