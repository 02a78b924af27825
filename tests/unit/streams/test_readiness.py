from __future__ import annotations

import pytest

from streams.readiness import ProgressReadings, Readiness, readiness
from streams.runtime.runner import PartitionProgress

STALL_S = 60.0


def answer(
    readings: ProgressReadings,
    now: float,
    *,
    settled: bool = True,
    owns: bool = True,
    runner_ready: bool = True,
) -> Readiness:
    return readiness(
        settled=settled,
        owns=owns,
        runner_ready=runner_ready,
        readings=readings,
        now=now,
        stall_s=STALL_S,
    )


def read_at(now: float, *progress: PartitionProgress) -> ProgressReadings:
    readings = ProgressReadings(0.0)
    readings.read(progress, now)
    return readings


def test_a_settled_worker_whose_partitions_move_is_ready() -> None:
    readings = read_at(100.0, PartitionProgress(0, 10, 12, 0.0), PartitionProgress(1, 5, 5, 0.0))
    assert answer(readings, 101.0) == Readiness(200, {"status": "ready"})


@pytest.mark.parametrize(
    ("settled", "owns", "runner_ready"),
    [(False, True, True), (False, False, True), (True, True, False)],
)
def test_a_worker_joining_restoring_or_not_yet_seeking_is_rebalancing(
    settled: bool, owns: bool, runner_ready: bool
) -> None:
    got = answer(read_at(100.0), 100.0, settled=settled, owns=owns, runner_ready=runner_ready)
    assert got == Readiness(503, {"status": "rebalancing"})


def test_a_worker_that_owns_nothing_reads_nothing_and_need_not_have_sought() -> None:
    assert answer(read_at(0.0), 1000.0, owns=False, runner_ready=False).status == 200


def test_a_partition_standing_still_for_stall_s_makes_the_worker_not_ready() -> None:
    readings = read_at(
        100.0, PartitionProgress(3, 40, 45, STALL_S), PartitionProgress(4, 7, 9, STALL_S - 1)
    )
    assert answer(readings, 100.0) == Readiness(
        503,
        {"status": "stalled", "partitions": {"3": {"committed": 40, "end": 45, "stalled_s": 60}}},
    )


def test_ends_unread_for_stall_s_make_the_worker_not_ready_whatever_the_last_reading_said() -> None:
    readings = read_at(100.0, PartitionProgress(0, 10, 10, 0.0))
    assert answer(readings, 100.0 + STALL_S - 0.1).status == 200
    assert answer(readings, 100.0 + STALL_S + 0.4) == Readiness(
        503, {"status": "unreachable", "unanswered_s": 60}
    )


def test_the_next_reading_makes_it_ready_again() -> None:
    readings = read_at(100.0, PartitionProgress(0, 10, 10, 0.0))
    assert answer(readings, 200.0).status == 503
    readings.read([PartitionProgress(0, 12, 12, 0.0)], 200.0)
    assert answer(readings, 200.5).status == 200


def test_partitions_on_the_move_forget_the_last_reading_and_start_the_wait_again() -> None:
    readings = read_at(100.0, PartitionProgress(0, 10, 20, STALL_S))
    readings.moving(300.0)
    assert readings.partitions == {}
    assert readings.unanswered_s(301.0) == 1.0
    assert answer(readings, 301.0).status == 200


def test_unanswered_time_starts_at_construction_and_never_runs_backwards() -> None:
    readings = ProgressReadings(50.0)
    assert readings.unanswered_s(80.0) == 30.0
    assert readings.unanswered_s(40.0) == 0.0
