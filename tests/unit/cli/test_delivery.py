"""Delivering a plan: signatures in both header families, retries, backoff, pacing, limits."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from bench.proc import free_port
from cli import delivery
from sessionflow.events import SESSION_ENDED
from streams.models import IncompleteReason
from tests.unit.cli.webhook_receiver import SECRET_NEW, SECRET_OLD, Receiver, make_plan


async def test_every_request_verifies_with_svix_in_both_families_during_rotation(
    serve: Callable[..., Receiver],
) -> None:
    # The receiver knows only the new secret: one of the two signatures must match it.
    receiver = serve([SECRET_NEW])
    plan = make_plan(30, retry_share=0.1, resend_share=0.1, half_only_share=0.1, planned_share=0.1)
    report = await delivery.deliver(
        plan, receiver.url, [SECRET_OLD, SECRET_NEW], concurrency=8, header_family="mixed"
    )
    assert receiver.bad_signatures == 0
    assert report.ok
    assert report.requests == len(plan.deliveries) == receiver.attempts.total()
    assert report.status_counts == Counter({"200": len(plan.deliveries)})
    assert receiver.families["svix"] > 0
    assert receiver.families["webhook"] > 0
    for d in plan.deliveries:
        assert receiver.bodies[d.message_id] == d.body  # the exact bytes, never re-serialised
    complete, incomplete, planned = report.expected()
    assert complete == plan.expectations.complete
    assert incomplete == dict(plan.expectations.incomplete)
    assert planned == plan.expectations.planned_events
    p50, p99 = report.latency_s(0.5), report.latency_s(0.99)
    assert p50 is not None
    assert p99 is not None
    assert 0 < p50 <= p99


async def test_a_wrong_secret_is_rejected_and_fails_the_run(serve: Callable[..., Receiver]) -> None:
    receiver = serve([SECRET_NEW])
    plan = make_plan(2)
    report = await delivery.deliver(
        plan, receiver.url, [SECRET_OLD], max_attempts=2, retry_base_s=0.01, retry_cap_s=0.05
    )
    assert receiver.bad_signatures == 2 * len(plan.deliveries)
    assert report.status_counts == Counter({"401": 2 * len(plan.deliveries)})
    assert not report.ok
    assert report.failed_message_ids == {d.message_id for d in plan.deliveries}


async def test_non_2xx_is_retried_under_the_same_message_id(serve: Callable[..., Receiver]) -> None:
    def flaky(_msg_id: str, attempt: int) -> tuple[int, dict[str, str]]:
        return (503, {"Retry-After": "0"}) if attempt <= 2 else (202, {})

    receiver = serve([SECRET_NEW], flaky)
    plan = make_plan(10)
    n = len(plan.deliveries)
    report = await delivery.deliver(
        plan, receiver.url, [SECRET_NEW], concurrency=4, retry_base_s=0.01, retry_cap_s=0.05
    )
    assert report.ok
    assert receiver.bad_signatures == 0  # each retry re-signed and still valid
    assert receiver.attempts == Counter({d.message_id: 3 for d in plan.deliveries})
    assert report.requests == 3 * n
    assert report.retries == 2 * n
    assert report.status_counts == Counter({"503": 2 * n, "202": n})
    assert report.delivered_message_ids == {d.message_id for d in plan.deliveries}


async def test_an_event_that_never_gets_a_2xx_is_a_failure(serve: Callable[..., Receiver]) -> None:
    plan = make_plan(10, retry_share=0.2)
    victim = next(d for d in plan.deliveries if d.event_type == SESSION_ENDED)
    assert victim.session_id is not None

    def refuse_victim(msg_id: str, _attempt: int) -> tuple[int, dict[str, str]]:
        return (500, {}) if msg_id == victim.message_id else (200, {})

    receiver = serve([SECRET_NEW], refuse_victim)
    report = await delivery.deliver(
        plan, receiver.url, [SECRET_NEW], max_attempts=3, retry_base_s=0.01, retry_cap_s=0.05
    )
    copies = sum(1 for d in plan.deliveries if d.message_id == victim.message_id)
    assert receiver.attempts[victim.message_id] == 3 * copies
    assert not report.ok
    assert report.failed_message_ids == {victim.message_id}
    complete, incomplete, _ = report.expected()
    assert complete == plan.expectations.complete - {victim.session_id}
    assert incomplete == {victim.session_id: IncompleteReason.CREATED_WITHOUT_ENDED}
    summary = report.summary()
    assert summary["ok"] is False
    assert summary["failures"] == 1
    assert summary["failed_message_ids"] == [victim.message_id]


async def test_connection_errors_are_retried_then_reported() -> None:
    port = free_port()  # a port nobody listens on
    plan = make_plan(2)
    report = await delivery.deliver(
        plan,
        f"http://127.0.0.1:{port}/webhooks/agntix",
        [SECRET_NEW],
        max_attempts=2,
        retry_base_s=0.01,
        retry_cap_s=0.05,
    )
    assert report.status_counts == Counter({"connection_error": 2 * len(plan.deliveries)})
    assert report.retries == len(plan.deliveries)
    assert not report.ok
    assert report.latency_s(0.5) is None


async def test_retry_after_is_honoured(serve: Callable[..., Receiver]) -> None:
    def once(_msg_id: str, attempt: int) -> tuple[int, dict[str, str]]:
        return (503, {"Retry-After": "0.3"}) if attempt == 1 else (200, {})

    receiver = serve([SECRET_NEW], once)
    plan = make_plan(1, reorder_share=0.0)
    started = time.monotonic()
    report = await delivery.deliver(
        plan, receiver.url, [SECRET_NEW], retry_base_s=0.001, retry_cap_s=5.0
    )
    assert report.ok
    assert report.retries == len(plan.deliveries)
    assert time.monotonic() - started >= 0.3


async def test_concurrency_bounds_requests_in_flight(serve: Callable[..., Receiver]) -> None:
    receiver = serve([SECRET_NEW], delay_s=0.05)
    plan = make_plan(12)
    report = await delivery.deliver(plan, receiver.url, [SECRET_NEW], concurrency=3)
    assert report.ok
    assert 2 <= receiver.max_inflight <= 3


async def test_rate_paces_the_requests(serve: Callable[..., Receiver]) -> None:
    receiver = serve([SECRET_NEW])
    plan = make_plan(15)  # 30 deliveries
    started = time.monotonic()
    report = await delivery.deliver(plan, receiver.url, [SECRET_NEW], concurrency=16, rate=100.0)
    elapsed = time.monotonic() - started
    assert report.ok
    # 30 requests at 100/s with a 50 ms burst allowance: at least 0.25 s.
    assert elapsed >= 0.24
    assert report.requests / report.elapsed_s <= 130


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    import random

    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 10.0), (30, 10.0)]:
        delays = [delivery.backoff_s(attempt, base_s=0.5, cap_s=10.0, rng=rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1
