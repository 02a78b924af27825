"""`GET /sessions/{id}`: what the worker's table holds for one session, from any worker.

The session's partition follows from its id (the raw topic's key, murmur2 as every producer
partitions it). The worker that owns the partition reads its store; any other worker forwards
the request to the owner's web server (the group's assignment names each member's URL, as
Faust's table routing does) and passes the answer back, Retry-After included. A request that
was already forwarded once is never forwarded again: while owners move it gets 503.

What is shown goes through sessionflow/redaction.py unless the request asks for `?full=true`
(README, "Keep the inside inside", says who may).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from faust.types import TP

from sessionflow.raw_record import partition_for_key
from sessionflow.redaction import redact_body
from streams import core, state_codec
from streams.models import format_ms
from streams.runtime.app import App
from streams.runtime.table import partition_store

log = logging.getLogger(__name__)

ROUTED_HEADER: Final = "X-Sessionflow-Routed"
RETRY_AFTER_S: Final = 2
FORWARD_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, object]
    retry_after_s: int | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(self.retry_after_s)}


def parse_session_id(text: str) -> str | None:
    """The id as given when it is a UUID (the table's key is the id as the webhook spelled it)."""
    try:
        uuid.UUID(text)
    except ValueError:
        return None
    return text


def is_full(query: Mapping[str, str]) -> bool:
    """`?full=true` (or 1, yes): the unredacted view."""
    return query.get("full", "").lower() in {"1", "true", "yes"}


def unavailable(session_id: str, partition: int, why: str) -> Answer:
    return Answer(
        503,
        {"sessionId": session_id, "partition": partition, "error": "unavailable", "detail": why},
        RETRY_AFTER_S,
    )


def view(
    session_id: str,
    partition: int,
    stored: bytes | None,
    *,
    ttl_ms: int,
    grace_ms: int,
    full: bool = False,
) -> Answer:
    """The answer for what the store holds under the session's key (None: nothing)."""
    if stored is None:
        return Answer(
            404,
            {
                "sessionId": session_id,
                "partition": partition,
                "state": "unknown",
                "detail": "the table holds nothing for this session",
            },
        )
    try:
        state = state_codec.decode_state(stored, session_id)
    except core.StateDecodeError:
        # What the worker itself would stop on: say so rather than guess.
        return Answer(
            500,
            {
                "sessionId": session_id,
                "partition": partition,
                "error": "undecodable_state",
                "detail": "the table holds bytes this worker cannot read",
            },
        )
    body: dict[str, object] = {"sessionId": session_id, "partition": partition}
    if isinstance(state, core.PendingSession):
        body.update(
            state="waiting",
            half=state.event_type,
            waitingFor=(
                "session.ended" if state.event_type == "session.created" else "session.created"
            ),
            messageId=state.message_id,
            receivedAt=format_ms(state.received_at_ms),
            firstSeenAt=format_ms(state.first_seen_ms),
            # The half is reported incomplete once stream time passes TTL plus the grace.
            expiresAt=format_ms(core.deadline_ms(state, ttl_ms) + grace_ms),
            event=redact_body(state.body, full=full),
        )
    else:
        body.update(
            state="completed",
            completedAt=format_ms(state.closed_at_ms),
            created={"messageId": state.created.message_id},
            ended={"messageId": state.ended.message_id},
            # Until then the marker drops late duplicates; then it is deleted.
            forgottenAt=format_ms(core.deadline_ms(state, ttl_ms)),
        )
    return Answer(200, body)


def owner_url(
    table_metadata: Mapping[str, Mapping[str, Any]], topic: str, partition: int
) -> str | None:
    """The web URL of the member that holds `partition` of `topic` active, per the assignment."""
    for url, topics in table_metadata.items():
        if partition in topics.get(topic, ()):
            return url
    return None


class SessionsView:
    """The page's shell: which worker answers, and reading the store when it is this one."""

    def __init__(
        self, app: App, table: Any, *, partitions: int, ttl_ms: int, grace_ms: int
    ) -> None:
        self._app, self._table = app, table
        self._partitions, self._ttl_ms, self._grace_ms = partitions, ttl_ms, grace_ms

    def _settled(self) -> bool:
        app = self._app
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # not on TableManagerT
        return bool(
            recovery.completed.is_set()
            and not app.rebalancing
            and not app.in_recovery
            and app.runner.ready
        )

    async def answer(
        self, raw_id: str, query: Mapping[str, str], headers: Mapping[str, str], path_qs: str
    ) -> Answer:
        session_id = parse_session_id(raw_id)
        if session_id is None:
            return Answer(400, {"error": "bad_session_id", "detail": "not a UUID"})
        partition = partition_for_key(session_id.encode(), self._partitions)
        raw_topic = self._app.runner.sources.raw
        if TP(raw_topic, partition) in self._app.assignor.assigned_actives():
            if not self._settled():
                return unavailable(session_id, partition, "the partition is being restored")
            store = partition_store(self._table, partition, self._partitions)
            answer = view(
                session_id,
                partition,
                store.get(session_id.encode()),
                ttl_ms=self._ttl_ms,
                grace_ms=self._grace_ms,
                full=is_full(query),
            )
            # Which worker read its store: the answer of the owner, also when forwarded.
            answer.body["worker"] = str(self._app.conf.canonical_url)
            return answer
        if headers.get(ROUTED_HEADER):
            return unavailable(session_id, partition, "the partition is moving between workers")
        changelog = self._table.changelog_topic.get_topic_name()
        url = owner_url(self._app.assignor.table_metadata(changelog), changelog, partition)
        if url is None or self._app.rebalancing:
            return unavailable(session_id, partition, "no worker owns the partition right now")
        return await self._forward(url.rstrip("/") + path_qs, session_id, partition)

    async def _forward(self, url: str, session_id: str, partition: int) -> Answer:
        try:
            async with self._app.http_client.get(
                url,
                headers={ROUTED_HEADER: "1"},
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
                allow_redirects=False,
            ) as response:
                body = await response.json(content_type=None)
                retry = response.headers.get("Retry-After")
                return Answer(
                    response.status,
                    body if isinstance(body, dict) else {"answer": body},
                    int(retry) if retry and retry.isdigit() else None,
                )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("the owner of a session did not answer: %s", type(exc).__name__)
            return unavailable(session_id, partition, "the owning worker did not answer")


def register_sessions_page(view_: SessionsView, app: App) -> None:
    @app.page("/sessions/{session_id}")
    async def session(web: Any, request: Any, session_id: str) -> Any:
        answer = await view_.answer(session_id, request.query, request.headers, request.path_qs)
        return web.json(answer.body, status=answer.status, headers=answer.headers)

    del session
