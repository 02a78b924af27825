"""The worker's view of one session: each state of the table, ids, and who owns a partition."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from faust.types import TP

from sessionflow.raw_record import partition_for_key
from streams import core, state_codec
from streams.models import format_ms
from streams.sessions_view import (
    ROUTED_HEADER,
    SessionsView,
    is_full,
    owner_url,
    parse_session_id,
    unavailable,
    view,
)
from tests.unit.streams.samples import T0_MS, envelope, session_created, session_ended

TTL_MS = 60_000
GRACE_MS = 5_000
SID = "3f2b8c1e-9d4a-4e6b-8f1a-2c3d4e5f6a7b"


def pending(event_type: str = "session.created") -> core.PendingSession:
    event = session_created(SID) if event_type == "session.created" else session_ended(SID)
    step = core.on_event(None, envelope(event, "msg_first"), T0_MS + 7, TTL_MS)
    assert isinstance(step.state, core.PendingSession)
    return step.state


def marker() -> core.CompletionMarker:
    first = pending()
    step = core.on_event(
        first, envelope(session_ended(SID), "msg_second", T0_MS + 900), T0_MS + 950, TTL_MS
    )
    assert isinstance(step.state, core.CompletionMarker)
    return step.state


def test_nothing_stored_is_404_unknown() -> None:
    answer = view(SID, 3, None, ttl_ms=TTL_MS, grace_ms=GRACE_MS)
    assert answer.status == 404
    assert answer.body["state"] == "unknown"
    assert answer.body["partition"] == 3
    assert answer.headers == {}


def test_a_pending_half_says_which_half_its_message_id_and_when_it_expires() -> None:
    stored = state_codec.encode_state(pending("session.ended"))
    answer = view(SID, 1, stored, ttl_ms=TTL_MS, grace_ms=GRACE_MS)
    assert answer.status == 200
    body = answer.body
    assert body["state"] == "waiting"
    assert body["half"] == "session.ended"
    assert body["waitingFor"] == "session.created"
    assert body["messageId"] == "msg_first"
    assert body["receivedAt"] == format_ms(T0_MS)
    assert body["firstSeenAt"] == format_ms(T0_MS + 7)
    assert body["expiresAt"] == format_ms(T0_MS + TTL_MS + GRACE_MS)


def test_the_pending_event_is_redacted_unless_full_is_asked_for() -> None:
    stored = state_codec.encode_state(pending())
    shown = str(view(SID, 0, stored, ttl_ms=TTL_MS, grace_ms=GRACE_MS).body["event"])
    assert "+14155550123" not in shown
    assert "003Dn00000Qx7ZAIAZ" not in shown
    full = str(view(SID, 0, stored, ttl_ms=TTL_MS, grace_ms=GRACE_MS, full=True).body["event"])
    assert "+14155550123" in full


def test_a_completion_marker_names_both_message_ids_and_when_it_is_forgotten() -> None:
    answer = view(SID, 2, state_codec.encode_state(marker()), ttl_ms=TTL_MS, grace_ms=GRACE_MS)
    assert answer.status == 200
    body = answer.body
    assert body["state"] == "completed"
    assert body["completedAt"] == format_ms(T0_MS + 900)
    assert body["created"] == {"messageId": "msg_first"}
    assert body["ended"] == {"messageId": "msg_second"}
    assert body["forgottenAt"] == format_ms(T0_MS + 900 + TTL_MS)
    assert "event" not in body  # a marker keeps no body


def test_bytes_the_worker_cannot_read_are_a_500_not_a_guess() -> None:
    answer = view(SID, 0, b"\x00garbage", ttl_ms=TTL_MS, grace_ms=GRACE_MS)
    assert answer.status == 500
    assert answer.body["error"] == "undecodable_state"


def test_ids_are_uuids_as_spelled() -> None:
    assert parse_session_id(SID) == SID
    upper = str(uuid.uuid4()).upper()
    assert parse_session_id(upper) == upper  # the table's key is the id as the webhook spelled it
    for bad in ("", "42", "not-a-uuid", SID + "x", "../metrics"):
        assert parse_session_id(bad) is None


def test_full_only_when_asked() -> None:
    for yes in ("true", "1", "YES"):
        assert is_full({"full": yes})
    for no in ("false", "", "0"):
        assert not is_full({"full": no})
    assert not is_full({})


def test_unavailable_is_503_with_retry_after() -> None:
    answer = unavailable(SID, 4, "restoring")
    assert answer.status == 503
    assert answer.headers == {"Retry-After": "2"}
    assert answer.body["partition"] == 4


def test_owner_url_reads_the_assignment() -> None:
    metadata = {
        "http://w1:6066": {"changelog": [0, 2], "other": [1]},
        "http://w2:6066": {"changelog": [1, 3]},
    }
    assert owner_url(metadata, "changelog", 1) == "http://w2:6066"
    assert owner_url(metadata, "changelog", 2) == "http://w1:6066"
    assert owner_url(metadata, "changelog", 7) is None
    assert owner_url({}, "changelog", 0) is None


# -- the shell: which worker answers, and 503 while a partition is restoring or moving ----------


class _Event:
    def __init__(self, done: bool) -> None:
        self._done = done

    def is_set(self) -> bool:
        return self._done


class _App:
    """What SessionsView reads of the Faust app, settable per test."""

    def __init__(self, *, owns: bool, restored: bool = True, owner: str | None = None) -> None:
        self.rebalancing = False
        self.in_recovery = not restored
        self.tables = SimpleNamespace(recovery=SimpleNamespace(completed=_Event(restored)))
        self.runner = SimpleNamespace(ready=restored, sources=SimpleNamespace(raw="raw"))
        partition = partition_for_key(SID.encode(), 4)
        actives = {TP("raw", partition)} if owns else set()
        owners = {owner: {"changelog": [partition]}} if owner else {}
        self.assignor = SimpleNamespace(
            assigned_actives=lambda: actives, table_metadata=lambda topic: owners
        )


class _Table:
    class changelog_topic:
        @staticmethod
        def get_topic_name() -> str:
            return "changelog"


def sessions_view(app: _App) -> SessionsView:
    return SessionsView(app, _Table(), partitions=4, ttl_ms=TTL_MS, grace_ms=GRACE_MS)  # type: ignore[arg-type]


async def test_a_bad_id_is_400_before_anything_is_read() -> None:
    answer = await sessions_view(_App(owns=True)).answer("nope", {}, {}, "/sessions/nope")
    assert answer.status == 400


async def test_the_owner_answers_503_while_its_partition_is_restored() -> None:
    answer = await sessions_view(_App(owns=True, restored=False)).answer(SID, {}, {}, "/")
    assert answer.status == 503
    assert answer.headers == {"Retry-After": "2"}
    assert "restored" in str(answer.body["detail"])


async def test_a_forwarded_request_is_never_forwarded_again() -> None:
    view_ = sessions_view(_App(owns=False, owner="http://w2:6066"))
    answer = await view_.answer(SID, {}, {ROUTED_HEADER: "1"}, "/")
    assert answer.status == 503
    assert "moving" in str(answer.body["detail"])


async def test_without_an_owner_in_the_assignment_it_is_503() -> None:
    answer = await sessions_view(_App(owns=False)).answer(SID, {}, {}, "/")
    assert answer.status == 503
    assert answer.headers == {"Retry-After": "2"}
