"""After a rebalance: which sessions already have a transcript written past the last commit."""

from __future__ import annotations

import time
from collections.abc import Iterable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from enricher.records import WRITTEN


async def read_back(
    reader: AIOKafkaConsumer, topic: str, starts: dict[int, int], timeout_s: float
) -> list[str]:
    """Session ids whose transcript (ok or not_found) lies at or past each start offset."""
    tps = [TopicPartition(topic, p) for p in starts]
    reader.assign(tps)
    ends = await reader.end_offsets(tps)
    todo = {tp for tp in tps if ends[tp] > starts[tp.partition]}
    for tp in todo:
        reader.seek(tp, starts[tp.partition])
    found: list[str] = []
    deadline = time.monotonic() + timeout_s
    while todo and time.monotonic() < deadline:
        batches = await reader.getmany(*todo, timeout_ms=500)
        for records in batches.values():
            for record in records:
                if record.key is not None and written_status(record.headers, record.value):
                    found.append(record.key.decode("utf-8", "replace"))
        for tp in list(todo):
            if await reader.position(tp) >= ends[tp]:
                todo.discard(tp)
    reader.unsubscribe()
    return found


def written_status(headers: Iterable[tuple[str, bytes]], value: bytes | None) -> bool:
    """Whether a transcript record means done (ok or not_found): its status header, else its body."""
    for name, data in headers:
        if name == "status":
            return data.decode("ascii", "replace") in WRITTEN
    if value is None:
        return False
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("status") in WRITTEN
