"""The fetch state machine: pages, cursors, retries, deadlines and caps, without a network."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enricher.errors import EnvelopeError
from enricher.fetch import (
    Action,
    Answer,
    Failure,
    Finished,
    Observation,
    Policy,
    Request,
    Unauthorized,
    begin,
    next_page_url,
    step,
    to_record,
    too_large_record,
)
from enricher.records import FailureReason, TranscriptStatus

URL = "https://api.example/api/v1/chat/sessions/s1/messages"
POLICY = Policy(max_attempts=5, deadline_s=60, request_timeout_s=10, max_pages=4, max_bytes=10_000)
SID = "123e4567-e89b-12d3-a456-426614174000"


def page(messages: list[dict[str, Any]], cursor: str | None = None, status: int = 200) -> Answer:
    doc: dict[str, Any] = {"messages": messages}
    if cursor is not None:
        doc["nextCursor"] = cursor
    return Answer(status=status, body=json.dumps(doc).encode())


def run(
    observations: list[Observation], policy: Policy = POLICY, step_s: float = 0.0
) -> tuple[list[Request], Action]:
    """Feed observations until the machine finishes; the requests it asked for and its end."""
    now = 0.0
    state, first = begin(URL, now, policy)
    action: Action = first
    requests: list[Request] = []
    for seen in observations:
        assert isinstance(action, Request), f"finished early: {action}"
        requests.append(action)
        now += action.delay_s + step_s
        state, action = step(state, seen, now, 1_700_000_000 + now, 0.5, policy)
    return requests, action


def test_one_page_is_ok() -> None:
    requests, end = run([page([{"id": "m1"}])])
    assert requests[0].url == URL
    assert end == Finished(
        TranscriptStatus.OK, [{"id": "m1"}], attempts=1, pages=1, http_status=200
    )


def test_pages_follow_the_cursor_and_come_out_in_time_order() -> None:
    requests, end = run(
        [
            page([{"id": "b", "createdAt": 2}], "c1"),
            page([{"id": "a", "createdAt": 1}], "c2"),
            page([{"id": "c", "createdAt": 3}]),
        ]
    )
    assert [r.url for r in requests] == [URL, URL + "?cursor=c1", URL + "?cursor=c2"]
    assert isinstance(end, Finished)
    assert end.status is TranscriptStatus.OK
    assert [m["id"] for m in end.messages or []] == ["a", "b", "c"]
    assert (end.pages, end.attempts) == (3, 3)


def test_404_is_not_found_at_once() -> None:
    _, end = run([Answer(404)])
    assert isinstance(end, Finished)
    assert (end.status, end.attempts, end.http_status, end.messages) == (
        TranscriptStatus.NOT_FOUND,
        1,
        404,
        None,
    )


def test_404_on_a_later_page_fails() -> None:
    _, end = run([page([], "c1"), Answer(404)])
    assert isinstance(end, Finished)
    assert (end.status, end.error, end.http_status) == (
        TranscriptStatus.FAILED,
        FailureReason.HTTP_STATUS,
        404,
    )


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_credential_stops_the_fetch(status: int) -> None:
    _, end = run([Answer(500), Answer(status)])
    assert end == Unauthorized(http_status=status, attempts=2)


def test_transient_failures_are_retried_with_growing_delays() -> None:
    requests, end = run([Answer(500), Failure("timeout"), Failure("connection_error"), page([])])
    assert isinstance(end, Finished)
    assert (end.status, end.attempts, end.retries) == (TranscriptStatus.OK, 4, 3)
    delays = [r.delay_s for r in requests]
    assert delays[0] == 0
    assert delays[1] < delays[2] < delays[3]


def test_a_retry_asks_for_the_same_page_again() -> None:
    requests, _ = run([page([{"id": "1"}], "c1"), Answer(503), page([{"id": "2"}])])
    assert [r.url for r in requests] == [URL, URL + "?cursor=c1", URL + "?cursor=c1"]


def test_retry_after_is_honoured() -> None:
    requests, _ = run([Answer(429, retry_after="7"), page([])])
    assert 7 <= requests[1].delay_s <= 7.7


def test_attempts_run_out_with_the_last_status() -> None:
    _, end = run([Answer(503)] * POLICY.max_attempts)
    assert isinstance(end, Finished)
    assert (end.status, end.error, end.http_status, end.attempts) == (
        TranscriptStatus.FAILED,
        FailureReason.HTTP_STATUS,
        503,
        POLICY.max_attempts,
    )
    assert "gave up after 5 attempts" in (end.detail or "")


def test_the_attempt_limit_is_per_page_not_per_transcript() -> None:
    pages = [page([{"id": str(i)}], f"c{i}") for i in range(3)] + [page([])]
    flaky = [Answer(503)] * (POLICY.max_attempts - 1)
    _, end = run([pages[0], *flaky, pages[1], *flaky, pages[2], pages[3]])
    assert isinstance(end, Finished)
    assert end.status is TranscriptStatus.OK
    assert end.attempts == 4 + 2 * (POLICY.max_attempts - 1) > POLICY.max_attempts


def test_attempts_run_out_on_timeouts_with_the_error() -> None:
    _, end = run([Failure("timeout")] * POLICY.max_attempts)
    assert isinstance(end, Finished)
    assert (end.error, end.http_status) == (FailureReason.TIMEOUT, None)


def test_a_retry_after_beyond_the_deadline_fails_now() -> None:
    _, end = run([Answer(429, retry_after="3600")])
    assert isinstance(end, Finished)
    assert (end.status, end.http_status, end.attempts) == (TranscriptStatus.FAILED, 429, 1)
    assert "deadline" in (end.detail or "")


def test_requests_never_outlast_the_deadline() -> None:
    policy = Policy(deadline_s=12, request_timeout_s=10, max_attempts=100, backoff_max_s=1)
    requests, end = run([Failure("timeout")] * 3, policy, step_s=5)
    assert isinstance(end, Finished)
    assert all(r.timeout_s <= 10 for r in requests)
    assert requests[-1].timeout_s < 10  # what is left of the 12 s


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Answer(200, b"{", truncated=True), FailureReason.TOO_LARGE),
        (Answer(200, b"<html>"), FailureReason.INVALID_BODY),
        (Answer(400), FailureReason.HTTP_STATUS),
        (Answer(302), FailureReason.HTTP_STATUS),
    ],
)
def test_failures_that_a_retry_cannot_fix_fail_at_once(
    answer: Answer, reason: FailureReason
) -> None:
    _, end = run([answer])
    assert isinstance(end, Finished)
    assert (end.status, end.error, end.attempts) == (TranscriptStatus.FAILED, reason, 1)


def test_the_byte_budget_shrinks_with_every_page() -> None:
    first = page([{"id": "x" * 100}], "c1")
    requests, _ = run([first, page([])])
    assert requests[0].budget == POLICY.max_bytes
    assert requests[1].budget == POLICY.max_bytes - len(first.body)


def test_the_page_limit_and_a_repeated_cursor_fail() -> None:
    _, end = run([page([], f"c{i}") for i in range(POLICY.max_pages)])
    assert isinstance(end, Finished)
    assert end.error is FailureReason.PAGE_LIMIT
    _, end = run([page([], "c1"), page([], "c1")])
    assert isinstance(end, Finished)
    assert end.error is FailureReason.CURSOR_LOOP


def test_a_link_to_another_origin_is_not_followed() -> None:
    _, end = run([page([], "https://evil.example/steal")])
    assert isinstance(end, Finished)
    assert end.error is FailureReason.INVALID_BODY
    assert "another origin" in (end.detail or "")


def test_next_page_url() -> None:
    assert next_page_url(URL, "a b/c", "cursor") == URL + "?cursor=a+b%2Fc"
    assert next_page_url(URL + "?cursor=old&x=1", "new", "cursor") == URL + "?x=1&cursor=new"
    assert next_page_url(URL, "/api/v1/p?c=2", "cursor") == "https://api.example/api/v1/p?c=2"
    assert next_page_url(URL, "https://api.example/n", "cursor") == "https://api.example/n"
    with pytest.raises(EnvelopeError):
        next_page_url(URL, "http://api.example/n", "cursor")  # another scheme is another origin


observations = st.one_of(
    st.builds(Failure, st.sampled_from(["timeout", "connection_error"])),
    st.builds(Answer, st.sampled_from([200, 204, 400, 404, 429, 500, 503]), st.just(b"[]")),
    st.builds(
        Answer,
        st.just(200),
        st.sampled_from([b'{"data": [], "nextCursor": "a"}', b'{"data": [], "nextCursor": "b"}']),
    ),
)


@settings(max_examples=200)
@given(st.lists(observations, min_size=1, max_size=40))
def test_every_fetch_ends_and_counts_each_request_once(seen: list[Observation]) -> None:
    now = 0.0
    state, first = begin(URL, now, POLICY)
    action: Action = first
    made = 0
    for observation in seen:
        if not isinstance(action, Request):
            break
        made += 1
        now += action.delay_s
        state, action = step(state, observation, now, now, 0.3, POLICY)
    if isinstance(action, Finished):
        assert action.attempts == made <= POLICY.max_attempts * POLICY.max_pages
        assert (action.messages is not None) == (action.status is TranscriptStatus.OK)
        assert (action.error is not None) == (action.status is TranscriptStatus.FAILED)


def test_to_record_and_the_too_large_replacement() -> None:
    ok = to_record(
        SID,
        Finished(TranscriptStatus.OK, [{"id": "m"}], attempts=2, pages=1, http_status=200),
        "2025-01-01T00:00:00.000Z",
    )
    assert (ok.messageCount, ok.attempts, ok.error, ok.detail) == (1, 2, None, None)
    big = too_large_record(ok, 1000)
    assert (big.status, big.messages, big.messageCount, big.error) == (
        TranscriptStatus.FAILED,
        None,
        0,
        FailureReason.TOO_LARGE,
    )
    assert big.attempts == 2
