"""`sessionflow topics`' table: declared against actual, human retention."""

from __future__ import annotations

import pytest

from cli.topic_admin import TopicInfo, human_ms, rows
from sessionflow.topics import TopicSpec


@pytest.mark.parametrize(
    ("ms", "shown"),
    [
        ("604800000", "7d"),
        ("3600000", "1h"),
        ("90000", "90s"),
        ("-1", "forever"),
        ("1500", "1500ms"),
        ("x", "x"),
    ],
)
def test_human_ms(ms: str, shown: str) -> None:
    assert human_ms(ms) == shown


def test_rows_show_missing_and_mismatched_topics() -> None:
    specs = [TopicSpec("a", 4, 1, {}), TopicSpec("b", 4, 1, {}), TopicSpec("c", 4, 1, {})]
    found = {
        "a": TopicInfo("a", 4, 1, {"retention.ms": "86400000", "max.message.bytes": "10"}),
        "b": TopicInfo("b", 2, 1, {}),
    }
    assert rows(specs, found) == [
        ["a", "ok", "4", "1", "1d", "10"],
        ["b", "ok", "2 (declared 4)", "1", "-", "-"],
        ["c", "missing", "4 declared", "-", "-", "-"],
    ]
