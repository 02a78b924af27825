"""streams.runtime.stable_ends, through the consumer thread that asks it (consumer.py items 11, 12
and 14): a table partition is restored only past the transactions still open on its changelog, a
lost worker's transaction there is fenced rather than waited for, and a standby's end is never
below what its store holds of the changelog."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiokafka import errors as Errors
from faust.types import TP

from streams.runtime import stable_ends
from streams.runtime.stable_ends import open_transactions, stored_past_stable_end
from streams.settings import WorkerSettings

CHANGELOG = "unit.sessionflow-sessions-changelog"
TP0, TP1, STANDBY = TP(CHANGELOG, 0), TP(CHANGELOG, 1), TP(CHANGELOG, 2)


class Ends:
    """A consumer's end_offsets: `ends` as they stand, and every partition list asked for."""

    _client = "the consumer's client"

    def __init__(self, ends: Mapping[TP, int]) -> None:
        self.ends = dict(ends)
        self.asked: list[list[TP]] = []
        self.on_ask: Callable[[int], None] = lambda calls: None

    async def end_offsets(self, partitions: list[TP]) -> dict[TP, int]:
        self.asked.append(list(partitions))
        self.on_ask(len(self.asked))
        return {tp: self.ends[tp] for tp in partitions}


@pytest.fixture
def thread(worker_app: Callable[[WorkerSettings], Any], tmp_path: Path) -> Iterator[Any]:
    """The exactly-once worker's consumer thread, with TP0 and TP1 its active changelog
    partitions and STANDBY a standby; its consumers are Ends, set by the test."""
    app = worker_app(
        WorkerSettings(table_store="memory", data_dir=tmp_path, topic_namespace="unit.")
    )
    app.tables.recovery.active_tps = {TP0, TP1}
    thread = app.consumer._thread
    try:
        yield thread
    finally:
        thread.thread_loop.close()


class Fence:
    """fencing.fence_lost_transactions: every call's arguments, answered with `fenced` (or
    `error` raised)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, list[TP], str]] = []
        self.fenced: list[str] = []
        self.error: Exception | None = None

    async def __call__(
        self, client: Any, waiting: list[TP], own_id: str, timeout_ms: int, limit_s: float
    ) -> list[str]:
        self.calls.append((client, sorted(waiting), own_id))
        if self.error is not None:
            raise self.error
        return self.fenced


@pytest.fixture
def fence(monkeypatch: pytest.MonkeyPatch) -> Fence:
    fake = Fence()
    monkeypatch.setattr(stable_ends, "fence_lost_transactions", fake)
    return fake


def _install(thread: Any, stable: Ends, written: Ends) -> None:
    """`stable` as the thread's read_committed consumer, `written` as its plain one."""
    thread._ensure_consumer = lambda: stable
    thread._stable()._plain = written


def test_open_transactions_are_where_the_stable_end_lies_below_the_high_watermark() -> None:
    assert open_transactions({TP0: 79, TP1: 50}, {TP0: 303, TP1: 50}) == {TP0}
    assert open_transactions({}, {TP0: 0}) == {TP0}
    assert open_transactions({TP0: 10}, {}) == set()


def test_without_an_open_transaction_the_ends_cost_one_lookup_more(thread: Any) -> None:
    stable, written = Ends({TP0: 40, TP1: 50, STANDBY: 7}), Ends({TP0: 40, TP1: 50})
    _install(thread, stable, written)
    ends = asyncio.get_event_loop().run_until_complete(thread._highwaters([TP0, TP1, STANDBY]))
    assert ends == {TP0: 40, TP1: 50, STANDBY: 7}
    assert stable.asked == [[TP0, TP1, STANDBY]]
    assert written.asked == [[TP0, TP1]]  # the standby's end is never waited for


def test_recovery_waits_until_the_open_transaction_ends(
    thread: Any, fence: Fence, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(stable_ends, "STABLE_POLL_S", 0.001)
    # A zombie's transaction opened at offset 79; the new owner committed up to 302 past it.
    stable, written = Ends({TP0: 79, TP1: 50, STANDBY: 3}), Ends({TP0: 303, TP1: 50})

    def aborted_at_the_fourth_lookup(calls: int) -> None:
        if calls == 4:
            stable.ends[TP0] = 304  # its abort marker

    stable.on_ask = aborted_at_the_fourth_lookup
    _install(thread, stable, written)
    with caplog.at_level(logging.INFO, logger=stable_ends.__name__):
        ends = asyncio.get_event_loop().run_until_complete(thread._highwaters([TP0, TP1, STANDBY]))
    assert ends == {TP0: 304, TP1: 50, STANDBY: 3}
    assert stable.asked == [[TP0, TP1, STANDBY], [TP0], [TP0], [TP0]]  # only TP0 waits
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "partitions [0]" in caplog.records[0].getMessage()
    # It asked once to fence whoever left TP0's transaction open, as this worker.
    own = thread.app.own_worker_transaction().transactional_id
    assert fence.calls == [(Ends._client, [TP0], own)]


def test_a_transaction_open_past_the_lookups_time_is_reported_and_recovery_goes_on(
    thread: Any, fence: Fence, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(stable_ends, "STABLE_POLL_S", 0.001)
    limit_s = 0.05
    margin = thread.app.conf.broker_request_timeout - limit_s
    monkeypatch.setattr(stable_ends, "STABLE_WAIT_MARGIN_S", margin)
    stable, written = Ends({TP0: 79, TP1: 50}), Ends({TP0: 303, TP1: 50})
    _install(thread, stable, written)
    with caplog.at_level(logging.INFO, logger=stable_ends.__name__):
        ends = asyncio.get_event_loop().run_until_complete(thread._highwaters([TP0, TP1]))
    assert ends == {TP0: 79, TP1: 50}
    assert len(stable.asked) > 2
    assert [r.levelname for r in caplog.records] == ["WARNING", "ERROR"]


def test_stores_past_the_stable_end_hold_a_record_at_or_past_it() -> None:
    assert stored_past_stable_end({TP0: 300, TP1: 50}, {TP0: 344, TP1: 49}) == {TP0}
    assert stored_past_stable_end({TP0: 300}, {TP0: 300}) == {TP0}
    assert stored_past_stable_end({}, {TP0: 0}) == {TP0}


def _standby_ends(
    thread: Any, stable: Ends, written: Ends, stored: int, caplog: pytest.LogCaptureFixture
) -> dict[TP, int]:
    """The ends of TP0 and STANDBY, whose store holds the changelog up to offset `stored`."""
    thread.app.tables.recovery.standby_offsets[STANDBY] = stored
    _install(thread, stable, written)
    with caplog.at_level(logging.INFO, logger=stable_ends.__name__):
        return dict(asyncio.get_event_loop().run_until_complete(thread._highwaters([TP0, STANDBY])))


def test_a_standby_store_past_an_open_transaction_sets_its_end(
    thread: Any, fence: Fence, caplog: pytest.LogCaptureFixture
) -> None:
    """Reliability scenario 15, December 6: this worker committed STANDBY's records up to 344 in
    the last generation, past a cut-off worker's transaction open at 300; Faust stopped it with a
    ConsistencyError (344 > 299) where the standby's end is its stable end."""
    stable, written = Ends({TP0: 40, STANDBY: 300}), Ends({TP0: 40, STANDBY: 346})
    ends = _standby_ends(thread, stable, written, 344, caplog)
    assert ends == {TP0: 40, STANDBY: 345}
    assert stable.asked == [[TP0, STANDBY]]  # never waited for
    assert written.asked == [[TP0], [STANDBY]]
    assert fence.calls == []  # its active owner may be live
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "standby changelog partitions [2]" in caplog.records[0].getMessage()


def test_a_standby_store_past_the_high_watermark_keeps_fausts_consistency_check(
    thread: Any, fence: Fence, caplog: pytest.LogCaptureFixture
) -> None:
    """A store past everything the changelog holds (it was deleted under the store) is what
    Faust's ConsistencyError is for: the end stays the broker's."""
    stable, written = Ends({TP0: 40, STANDBY: 12}), Ends({TP0: 40, STANDBY: 12})
    assert _standby_ends(thread, stable, written, 344, caplog) == {TP0: 40, STANDBY: 12}
    assert caplog.records == []


def test_a_standby_store_within_the_stable_end_costs_no_lookup(
    thread: Any, fence: Fence, caplog: pytest.LogCaptureFixture
) -> None:
    stable, written = Ends({TP0: 40, STANDBY: 346}), Ends({TP0: 40})
    assert _standby_ends(thread, stable, written, 344, caplog) == {TP0: 40, STANDBY: 346}
    assert written.asked == [[TP0]]


def _wait_with_fence(
    thread: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Ends:
    """TP0 holds an open transaction until the third lookup of its end (the fence's abort)."""
    monkeypatch.setattr(stable_ends, "STABLE_POLL_S", 0.001)
    stable, written = Ends({TP0: 79, TP1: 50}), Ends({TP0: 303, TP1: 50})

    def aborted(calls: int) -> None:
        if calls == 3:
            stable.ends[TP0] = 304

    stable.on_ask = aborted
    _install(thread, stable, written)
    with caplog.at_level(logging.INFO, logger=stable_ends.__name__):
        ends = asyncio.get_event_loop().run_until_complete(thread._highwaters([TP0, TP1]))
    assert ends == {TP0: 304, TP1: 50}
    return stable


def test_a_fenced_worker_is_named_and_recovery_reads_past_its_abort(
    thread: Any, fence: Fence, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fence.fenced = ["unit.sessionflow-worker-lost"]
    _wait_with_fence(thread, monkeypatch, caplog)
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING", "INFO"]
    assert "fenced unit.sessionflow-worker-lost" in caplog.records[1].getMessage()


@pytest.mark.parametrize(
    "error",
    [
        Errors.TransactionalIdAuthorizationFailed(),  # no right to write other workers' ids
        Errors.IncompatibleBrokerVersion(),  # a broker without the requests (before Kafka 3.0)
        NotImplementedError(),  # a broker without their version
        TimeoutError(),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_fence_that_fails_leaves_the_wait_to_the_brokers_timeout(
    thread: Any,
    fence: Fence,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    fence.error = error
    _wait_with_fence(thread, monkeypatch, caplog)
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING", "INFO"]
    assert "could not fence" in caplog.records[1].getMessage()


def test_with_one_transaction_per_partition_nothing_is_fenced(
    worker_app: Callable[[WorkerSettings], Any],
    tmp_path: Path,
    fence: Fence,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A partition's new owner fences its last one by opening the partition's transactional id."""
    app = worker_app(
        WorkerSettings(
            table_store="memory",
            data_dir=tmp_path,
            topic_namespace="unit.",
            transaction_scope="partition",
        )
    )
    app.tables.recovery.active_tps = {TP0, TP1}
    thread = app.consumer._thread
    try:
        _wait_with_fence(thread, monkeypatch, caplog)
    finally:
        thread.thread_loop.close()
    assert fence.calls == []
