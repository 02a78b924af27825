"""The sender's reality: every event up to three times, halves reordered and far apart in time."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime

import pytest

from cli import traffic
from tests.reliability.conftest import ReportBook
from tests.reliability.harness import RECOVERY_S, TTL_S, Stack, by_scale, scenario, send_signed
from tests.reliability.outputs import Expected, assert_invariants, outcome_rows, wait_outputs

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

# Seconds kept between the last second half's send and the TTL, for the worker's lag.
_MARGIN_S = 6.0


def _copies(d: traffic.Delivery, rng: random.Random) -> list[traffic.Delivery]:
    """The delivery and up to two more: exact retries (same id) or resends (new id, same bytes)."""
    out = [d]
    for _ in range(rng.randint(0, 2)):
        if rng.random() < 0.5:
            out.append(
                traffic.Delivery(
                    d.message_id, d.event_type, d.body, d.session_id, traffic.DeliveryKind.RETRY
                )
            )
        else:
            fresh = "msg_" + "".join(rng.choices("0123456789abcdefghijklmnopqrstuvwxyz", k=27))
            out.append(
                traffic.Delivery(
                    fresh, d.event_type, d.body, d.session_id, traffic.DeliveryKind.RESEND
                )
            )
    return out


def reality(sessions: int, seed: int) -> tuple[traffic.Plan, traffic.Plan]:
    """Two phases: first halves (and half-only sessions), then second halves; each event
    duplicated up to 3x, copies of first halves also late in the second phase, each phase
    shuffled. Half of the complete sessions send session.ended first."""
    base = traffic.plan(
        sessions,
        seed=seed,
        now=datetime.now(UTC),
        mix=traffic.Mix(reorder_share=0.5, half_only_share=0.1),
    )
    rng = random.Random(seed)  # deterministic test traffic
    seen: set[str | None] = set()
    first: list[traffic.Delivery] = []
    second: list[traffic.Delivery] = []
    for d in base.deliveries:
        is_first = d.session_id not in seen
        seen.add(d.session_id)
        for i, copy in enumerate(_copies(d, rng)):
            if not is_first or (i > 0 and rng.random() < 0.5):
                second.append(copy)
            else:
                first.append(copy)
    rng.shuffle(first)
    rng.shuffle(second)
    return _plan(first), _plan(second)


def _plan(deliveries: list[traffic.Delivery]) -> traffic.Plan:
    expectations = traffic.Expectations(
        complete=frozenset(), incomplete={}, planned_events=0, planned_deliveries=0
    )
    return traffic.Plan(deliveries=tuple(deliveries), expectations=expectations)


@scenario("8")
async def test_duplicated_reordered_far_apart(stack: Stack, report_book: ReportBook) -> None:
    producer, _ = await stack.start("w1")

    sessions = by_scale(400, 1500)
    rate = float(by_scale(300, 600))
    first, second = reality(sessions, seed=8)
    # The second phase starts as late as the TTL allows: its last send still lands
    # _MARGIN_S before the TTL of the earliest first half.
    gap_s = TTL_S - len(second.deliveries) / rate - _MARGIN_S
    assert gap_s > len(first.deliveries) / rate, "the phases overlap: lower the count"
    started = time.monotonic()
    report1 = await send_signed(producer.url, first, rate=rate)
    await asyncio.sleep(max(0.0, started + gap_s - time.monotonic()))
    second_at = time.monotonic() - started
    report2 = await send_signed(producer.url, second, rate=rate)
    spread_s = time.monotonic() - started
    assert report1.ok, "the sender gave up on some first halves"
    assert report2.ok, "the sender gave up on some second halves"
    assert spread_s < TTL_S, f"the second phase ended {spread_s:.1f} s after the first began"

    expected = Expected()
    expected.add(report1)
    expected.add(report2)
    outcome = await wait_outputs(stack.env, expected, timeout_s=TTL_S + RECOVERY_S)
    halves = [r for r in outcome.raw if r.headers.get("event-type", b"").startswith(b"session.")]
    distinct = {(r.key, r.headers["event-type"]) for r in halves}
    dropped = stack.scrape_total("sessionflow_duplicates_total")
    retries = sum(
        d.kind is traffic.DeliveryKind.RETRY for p in (first, second) for d in p.deliveries
    )
    resends = sum(
        d.kind is traffic.DeliveryKind.RESEND for p in (first, second) for d in p.deliveries
    )
    report_book.record(
        "8",
        "The sender's reality: duplicates, reordering, halves far apart",
        {
            "sessions": sessions,
            "deliveries (originals + exact retries + resends)": (
                f"{len(first.deliveries) + len(second.deliveries)} "
                f"({len(first.deliveries) + len(second.deliveries) - retries - resends} + {retries} + {resends})"
            ),
            "accepted (2xx)": len(report1.delivered) + len(report2.delivered),
            "second phase began after (s)": round(second_at, 1),
            "first to last send (s), TTL (s)": f"{spread_s:.1f}, {TTL_S:.0f}",
            "raw session-event records / distinct halves": f"{len(halves)} / {len(distinct)}",
            "duplicates dropped (worker metric)": dropped,
            **outcome_rows(outcome, expected),
        },
        "The pairing core's own tests drive a controlled clock (tests/unit/streams); here the "
        "clock is real and the halves arrive as late as the TTL allows.",
    )
    assert dropped == len(halves) - len(distinct), "the worker dropped another count of duplicates"
    assert_invariants(outcome, expected)
