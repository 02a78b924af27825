"""How `sessionflow tail` shows records: output topics as is, raw and DLQ records with headers."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
import pytest
from aiokafka import TopicPartition

from cli.tail import Which, bytes_field, describe, reached, render, topic_for
from sessionflow.settings import KafkaSettings
from sessionflow.topics import Topics


@dataclass(frozen=True)
class FakeRecord:
    value: bytes | None
    key: bytes | None = b"k"
    headers: Sequence[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "t"
    partition: int = 1
    offset: int = 7
    timestamp: int = 1_700_000_000_000


def test_each_choice_names_its_namespaced_topic() -> None:
    topics = Topics.for_settings(KafkaSettings(topic_namespace="ns."))
    assert {w: topic_for(w, topics) for w in Which} == {
        Which.COMPLETED: "ns.agntix.sessions.completed",
        Which.INCOMPLETE: "ns.agntix.sessions.incomplete",
        Which.TRANSCRIPTS: "ns.agntix.sessions.transcripts",
        Which.DLQ: "ns.agntix.webhooks.dlq",
        Which.RAW: "ns.agntix.webhooks.raw",
    }


def test_output_records_print_as_their_json() -> None:
    record = FakeRecord(b'{"sessionId":"s","n":12345678901234567890}')
    assert describe(record, Which.COMPLETED) == orjson.loads(record.value or b"")


def test_dlq_records_show_headers_and_text_body() -> None:
    record = FakeRecord(
        b"{oops", key=None, headers=[("reason", b"not_json"), ("message-id", b"msg_1")]
    )
    assert describe(record, Which.DLQ) == {
        "partition": 1,
        "offset": 7,
        "timestamp": 1_700_000_000_000,
        "key": None,
        "headers": {"reason": "not_json", "message-id": "msg_1"},
        "body": "{oops",
    }


def test_binary_bodies_and_headers_are_base64_never_lossy() -> None:
    blob = b"\xff\x00\xfe"
    assert bytes_field("body", blob) == {"body_base64": base64.b64encode(blob).decode()}
    shown = describe(FakeRecord(blob, headers=[("message-id", blob)]), Which.RAW)
    assert base64.b64decode(shown["body_base64"]) == blob
    assert base64.b64decode(shown["headers"]["message-id_base64"]) == blob


def test_a_non_json_output_record_falls_back_to_the_raw_view() -> None:
    assert describe(FakeRecord(b"not json"), Which.INCOMPLETE)["body"] == "not json"


@pytest.mark.parametrize(
    ("pretty", "expected"), [(False, b'{"a":1}\n'), (True, b'{\n  "a": 1\n}\n')]
)
def test_render_is_one_line_unless_pretty(pretty: bool, expected: bytes) -> None:
    assert render({"a": 1}, pretty=pretty) == expected


def test_reached_needs_every_partition_at_its_end() -> None:
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    ends = {a: 3, b: 0}
    assert not reached({a: 2, b: 0}, ends)
    assert reached({a: 3, b: 0}, ends)
    assert reached({a: 4}, ends)  # an empty partition needs no position
