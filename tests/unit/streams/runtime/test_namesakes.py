"""streams.runtime.namesakes: another member under the worker's client id is a namesake, the
worker itself and other ids are not; a DescribeGroups answer reads into members, an error code
is raised; an unreachable coordinator leaves the worker running."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaError

from streams.runtime.namesakes import Member, members_of, namesakes, refuse_namesakes

OWN = Member("w1-aaa", "w1", "10.0.0.1")


def test_another_member_under_the_same_client_id_is_a_namesake() -> None:
    twin = Member("w1-bbb", "w1", "10.0.0.2")
    other = Member("w2-ccc", "w2", "10.0.0.3")
    assert namesakes([OWN, other, twin], OWN.member_id, OWN.client_id) == [twin]


def test_the_worker_alone_under_its_id_has_no_namesake() -> None:
    w10 = Member("w10-ddd", "w10", "10.0.0.4")
    assert namesakes([OWN, w10], OWN.member_id, OWN.client_id) == []


def _answer(error_code: int, members: list[dict[str, object]]) -> dict[str, object]:
    group = {"error_code": error_code, "group": "g", "state": "Stable", "members": members}
    return {"throttle_time_ms": 0, "groups": [group]}


def test_a_describe_groups_answer_reads_into_members() -> None:
    member: dict[str, object] = {
        "member_id": "m-1",
        "client_id": "w1",
        "client_host": "/127.0.0.1",
        "member_metadata": b"",
        "member_assignment": b"",
    }
    assert members_of(_answer(0, [member])) == [Member("m-1", "w1", "127.0.0.1")]


def test_an_error_code_in_the_answer_is_raised() -> None:
    with pytest.raises(KafkaError, match="error code 30"):
        members_of(_answer(30, []))


async def test_no_answer_leaves_the_worker_running() -> None:
    # Nothing listens on port 9: the question fails, and the worker is not stopped for it.
    await refuse_namesakes(
        "g", OWN.member_id, OWN.client_id, "127.0.0.1:9", {"request_timeout_ms": 1000}
    )
