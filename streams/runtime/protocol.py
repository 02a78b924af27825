"""Kafka requests that aiokafka 0.14 lacks, each declared once on aiokafka's protocol types.

The runtime sends five of them: TxnOffsetCommit v3 and OffsetFetch v7 (worker_txn.py),
DescribeProducers v0, ListTransactions v0 and DescribeTransactions v0 (fencing.py). Each is one
version of one API in Kafka's flexible encoding (KIP-482: compact strings and arrays, tagged
fields after every struct). `flexible_api` makes its request and response layouts from the
fields Kafka's message definitions list (common/message/*.json in kafka-clients), and its
`request(*values)` is what aiokafka's client sends: in that version, or, where the broker lacks
it, not at all (`Request.prepare` raises NotImplementedError rather than send a weaker one).
streams/runtime/internals.py checks the aiokafka types this relies on at start-up.
"""

from __future__ import annotations

import collections
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int32, Schema, TaggedFields

Field = tuple[str, Any]

STRING = CompactString("utf-8")
TAGS: Field = ("tags", TaggedFields)
PARTITION_INDEXES: Field = ("partition_indexes", CompactArray(Int32))


def structs(*fields: Field) -> CompactArray:
    """A flexible array of structs of `fields`, each struct closed by its tagged fields."""
    return CompactArray(*fields, TAGS)


def topics(partitions: Field = PARTITION_INDEXES) -> CompactArray:
    """Kafka's "topics, each with its name and partitions" layout (by default, partition
    indexes)."""
    return structs(("name", STRING), partitions)


def topic_partitions(*fields: Field) -> CompactArray:
    """Kafka's "topics, each with its name and partitions" layout, each partition a struct of
    `fields`."""
    return topics(("partitions", structs(*fields)))


def by_topic(partitions: Iterable[TopicPartition]) -> list[tuple[str, list[int], dict[int, bytes]]]:
    """`partitions` as the values of a `topics(PARTITION_INDEXES)` field, in the given order."""
    indexes: dict[str, list[int]] = collections.defaultdict(list)
    for tp in partitions:
        indexes[tp.topic].append(tp.partition)
    return [(topic, ps, {}) for topic, ps in indexes.items()]


@dataclass(frozen=True, slots=True)
class FlexibleApi:
    """One version of one Kafka API: its request and response layouts, and the builder aiokafka's
    client sends."""

    request_struct: type[Any]
    response_struct: type[Any]
    builder: type[Any]

    def request(self, *values: Any) -> Any:
        """The request whose fields are `values`, in the layout's order, its tags left out."""
        return self.builder(values)


def flexible_api(
    name: str, api_key: int, version: int, *, request: Sequence[Field], response: Sequence[Field]
) -> FlexibleApi:
    """Declare `name` v`version` (API key `api_key`) from its request's and response's fields."""
    response_struct = type(
        f"{name}Response_v{version}",
        (Response,),
        {"API_KEY": api_key, "API_VERSION": version, "SCHEMA": Schema(*response, TAGS)},
    )
    request_struct = type(
        f"{name}Request_v{version}",
        (RequestStruct,),
        {
            "FLEXIBLE_VERSION": True,
            "API_KEY": api_key,
            "API_VERSION": version,
            "RESPONSE_TYPE": response_struct,
            "SCHEMA": Schema(*request, TAGS),
        },
    )

    def __init__(self: Any, values: tuple[Any, ...]) -> None:
        self.values = values

    def build(self: Any, request_struct_class: type[Any]) -> Any:
        return request_struct_class(*self.values, {})

    def body(namespace: dict[str, Any]) -> None:
        namespace.update(API_KEY=api_key, __init__=__init__, build=build)

    # aiokafka's Request reads the versions it may send from its generic argument.
    builder = types.new_class(f"{name}Request", (Request[request_struct],), exec_body=body)
    return FlexibleApi(request_struct, response_struct, builder)
