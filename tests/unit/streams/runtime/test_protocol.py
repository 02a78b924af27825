"""streams.runtime.protocol: an API declared from its fields goes on the wire in its one flexible
version (or not at all), and answers decode in its layout."""

from __future__ import annotations

import io

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IncompatibleBrokerVersion
from aiokafka.protocol.types import Int16, Int32

from streams.runtime import protocol

ECHO = protocol.flexible_api(
    "Echo",
    61,
    2,
    request=(("group_id", protocol.STRING), ("topics", protocol.topics())),
    response=(
        ("throttle_time_ms", Int32),
        ("topics", protocol.topic_partitions(("partition_index", Int32), ("error_code", Int16))),
    ),
)


def test_the_request_is_sent_in_its_version_with_a_flexible_header() -> None:
    struct = ECHO.request("g", protocol.by_topic([TopicPartition("a", 1)])).prepare({61: (0, 5)})
    assert type(struct) is ECHO.request_struct
    assert (struct.API_KEY, struct.API_VERSION, struct.FLEXIBLE_VERSION) == (61, 2, True)
    assert type(struct.build_request_header(1, "c")).__name__ == "RequestHeader_v2"
    decoded = ECHO.request_struct.decode(io.BytesIO(struct.encode()))
    assert (decoded.group_id, decoded.topics) == ("g", [("a", [1], {})])


@pytest.mark.parametrize(
    ("versions", "refusal"),
    [
        ({61: (0, 1)}, NotImplementedError),
        ({61: (3, 4)}, NotImplementedError),
        ({}, IncompatibleBrokerVersion),  # a broker without the API at all
    ],
)
def test_a_broker_without_that_version_gets_nothing(
    versions: dict[int, tuple[int, int]], refusal: type[Exception]
) -> None:
    with pytest.raises(refusal):
        ECHO.request("g", []).prepare(versions)


def test_an_answer_decodes_in_the_response_layout() -> None:
    answer = ECHO.response_struct(0, [("a", [(1, 0, {}), (2, 6, {})], {})], {})
    decoded = ECHO.response_struct.decode(io.BytesIO(answer.encode()))
    assert decoded.topics == [("a", [(1, 0, {}), (2, 6, {})], {})]


def test_partitions_are_grouped_by_topic_in_the_order_given() -> None:
    tps = [TopicPartition("b", 2), TopicPartition("a", 0), TopicPartition("b", 0)]
    assert protocol.by_topic(tps) == [("b", [2, 0], {}), ("a", [0], {})]
