"""One session's fetch as a state machine: answers in, the next request or the result out. Pure.

The HTTP shell (enricher/client.py) only performs the `Request`s this module asks for and
feeds back what happened; every decision (pages, cursors, retries, deadlines, caps) is here.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from enricher.envelope import in_time_order, merge_page, parse_page
from enricher.errors import EnvelopeError
from enricher.records import FailureReason, TranscriptRecord, TranscriptStatus
from enricher.retry import Verdict, backoff_seconds, classify, parse_retry_after, retry_after_delay


@dataclass(frozen=True, slots=True)
class Policy:
    """The settings a fetch obeys."""

    max_attempts: int = 10  # tries of one request (one page)
    deadline_s: float = 120.0
    request_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_pages: int = 100
    max_bytes: int = 4 * 1024 * 1024
    cursor_param: str = "cursor"


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer. `truncated`: the body went past the byte budget and was cut there."""

    status: int
    body: bytes = b""
    retry_after: str | None = None
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Failure:
    """A request that got no answer."""

    kind: Literal["timeout", "connection_error"]


Observation = Answer | Failure


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    delay_s: float  # wait this long before sending
    timeout_s: float  # the whole request, body included
    budget: int  # read at most this many body bytes (one more marks the body too large)


@dataclass(frozen=True, slots=True)
class Finished:
    status: TranscriptStatus
    messages: list[dict[str, Any]] | None
    attempts: int
    pages: int
    http_status: int | None
    error: FailureReason | None = None
    detail: str | None = None
    retries: int = 0


@dataclass(frozen=True, slots=True)
class Unauthorized:
    """401/403: the credential is refused; the caller stops fetching and keeps its position."""

    http_status: int
    attempts: int


Action = Request | Finished | Unauthorized


@dataclass(frozen=True, slots=True)
class FetchState:
    url: str  # the session's messages URL
    started_s: float
    next_url: str
    attempts: int = 0
    pages: int = 0
    failures: int = 0  # consecutive failures of the current page
    retries: int = 0
    bytes_read: int = 0
    last_status: int | None = None
    cursors: frozenset[str] = frozenset()
    messages: tuple[dict[str, Any], ...] = field(default=())


def begin(url: str, now_s: float, policy: Policy) -> tuple[FetchState, Request]:
    state = FetchState(url=url, started_s=now_s, next_url=url)
    return state, _request(state, url, 0.0, now_s, policy)


def step(
    state: FetchState, seen: Observation, now_s: float, epoch_s: float, unit: float, policy: Policy
) -> tuple[FetchState, Action]:
    """The next action after one observation. `unit` in [0, 1) is the jitter's randomness."""
    state = replace(state, attempts=state.attempts + 1)
    if isinstance(seen, Failure):
        reason = FailureReason.TIMEOUT if seen.kind == "timeout" else FailureReason.CONNECTION_ERROR
        return _retry(state, reason, None, now_s, epoch_s, unit, policy)
    state = replace(state, last_status=seen.status, bytes_read=state.bytes_read + len(seen.body))
    if seen.truncated:
        return state, _failed(
            state,
            FailureReason.TOO_LARGE,
            f"the answers exceed {policy.max_bytes} bytes (SESSIONFLOW_MAX_TRANSCRIPT_BYTES)",
        )
    verdict = classify(seen.status)
    if verdict is Verdict.OK:
        return _on_page(state, seen, now_s, policy)
    if verdict is Verdict.NOT_FOUND:
        if state.pages == 0:
            return state, _finished(state, TranscriptStatus.NOT_FOUND)
        return state, _failed(state, FailureReason.HTTP_STATUS, "404 on a later page")
    if verdict is Verdict.UNAUTHORIZED:
        return state, Unauthorized(http_status=seen.status, attempts=state.attempts)
    if verdict is Verdict.RETRY:
        return _retry(
            state, FailureReason.HTTP_STATUS, seen.retry_after, now_s, epoch_s, unit, policy
        )
    return state, _failed(state, FailureReason.HTTP_STATUS, f"HTTP {seen.status}, not retried")


def _on_page(
    state: FetchState, answer: Answer, now_s: float, policy: Policy
) -> tuple[FetchState, Action]:
    try:
        page = parse_page(answer.body)
    except EnvelopeError as exc:
        return state, _failed(state, FailureReason.INVALID_BODY, str(exc))
    state = replace(
        state,
        pages=state.pages + 1,
        failures=0,
        messages=tuple(merge_page(state.messages, page.messages)),
    )
    if page.cursor is None:
        return state, _finished(state, TranscriptStatus.OK)
    if page.cursor in state.cursors:
        return state, _failed(state, FailureReason.CURSOR_LOOP, "the API repeated a cursor")
    if state.pages >= policy.max_pages:
        return state, _failed(
            state,
            FailureReason.PAGE_LIMIT,
            f"more than {policy.max_pages} pages (SESSIONFLOW_ENRICHER_MAX_PAGES)",
        )
    try:
        url = next_page_url(state.url, page.cursor, policy.cursor_param)
    except EnvelopeError as exc:
        return state, _failed(state, FailureReason.INVALID_BODY, str(exc))
    if now_s - state.started_s >= policy.deadline_s:
        return state, _failed(state, FailureReason.TIMEOUT, _deadline(policy))
    state = replace(state, next_url=url, cursors=state.cursors | {page.cursor})
    return state, _request(state, url, 0.0, now_s, policy)


def _retry(
    state: FetchState,
    reason: FailureReason,
    retry_after: str | None,
    now_s: float,
    epoch_s: float,
    unit: float,
    policy: Policy,
) -> tuple[FetchState, Action]:
    failures = state.failures + 1
    state = replace(state, failures=failures)
    what = _what(state, reason)
    # The limit counts tries of one request (page): a long transcript may take many pages.
    if failures >= policy.max_attempts:
        return state, _failed(state, reason, f"{what}; gave up after {failures} attempts")
    asked = parse_retry_after(retry_after, epoch_s)
    if asked is not None:
        delay = retry_after_delay(asked, unit)
    else:
        delay = backoff_seconds(failures, policy.backoff_initial_s, policy.backoff_max_s, unit)
    if now_s + delay - state.started_s >= policy.deadline_s:
        return state, _failed(state, reason, f"{what}; {_deadline(policy)}")
    state = replace(state, retries=state.retries + 1)
    return state, _request(state, state.next_url, delay, now_s + delay, policy)


def _request(
    state: FetchState, url: str, delay_s: float, send_at_s: float, policy: Policy
) -> Request:
    left = policy.deadline_s - (send_at_s - state.started_s)
    return Request(
        url=url,
        delay_s=delay_s,
        timeout_s=max(0.001, min(policy.request_timeout_s, left)),
        budget=max(0, policy.max_bytes - state.bytes_read),
    )


def _finished(
    state: FetchState,
    status: TranscriptStatus,
    error: FailureReason | None = None,
    detail: str | None = None,
) -> Finished:
    messages = in_time_order(state.messages) if status is TranscriptStatus.OK else None
    return Finished(
        status=status,
        messages=messages,
        attempts=state.attempts,
        pages=state.pages,
        http_status=state.last_status,
        error=error,
        detail=detail,
        retries=state.retries,
    )


def _failed(state: FetchState, reason: FailureReason, detail: str) -> Finished:
    return _finished(state, TranscriptStatus.FAILED, reason, detail)


def _what(state: FetchState, reason: FailureReason) -> str:
    if reason is FailureReason.HTTP_STATUS and state.last_status is not None:
        return f"HTTP {state.last_status}"
    return reason.value.replace("_", " ")


def _deadline(policy: Policy) -> str:
    return (
        f"the session's deadline of {policy.deadline_s:g} s "
        "(SESSIONFLOW_ENRICHER_SESSION_DEADLINE_SECONDS) ran out"
    )


def next_page_url(base: str, cursor: str, param: str) -> str:
    """The URL of the next page: the cursor as a query parameter, or a link the API gave.

    A link is followed only to the API's own origin: the credential never travels elsewhere.
    """
    if cursor.startswith(("http://", "https://", "/")):
        origin = urllib.parse.urlsplit(base)
        link = urllib.parse.urlsplit(urllib.parse.urljoin(base, cursor))
        if (link.scheme, link.netloc) != (origin.scheme, origin.netloc):
            raise EnvelopeError("the next-page link points to another origin; not followed")
        return link.geturl()
    parts = urllib.parse.urlsplit(base)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != param] + [(param, cursor)]
    return parts._replace(query=urllib.parse.urlencode(query)).geturl()


def to_record(session_id: str, result: Finished, fetched_at: str) -> TranscriptRecord:
    """The record written for a finished fetch."""
    return TranscriptRecord(
        sessionId=session_id,
        status=result.status,
        messages=result.messages,
        messageCount=len(result.messages or ()),
        fetchedAt=fetched_at,
        attempts=result.attempts,
        pages=result.pages,
        httpStatus=result.http_status,
        error=result.error,
        detail=result.detail,
    )


def too_large_record(record: TranscriptRecord, limit: int) -> TranscriptRecord:
    """What is written instead of a record Kafka would refuse for its size."""
    return record.model_copy(
        update={
            "status": TranscriptStatus.FAILED,
            "messages": None,
            "messageCount": 0,
            "error": FailureReason.TOO_LARGE,
            "detail": f"the record exceeds the transcripts topic's {limit} bytes",
        }
    )
