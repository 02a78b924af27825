"""Retry decisions: what each status means, backoff with jitter, Retry-After."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enricher.retry import (
    Verdict,
    backoff_seconds,
    classify,
    parse_retry_after,
    retry_after_delay,
)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.OK),
        (204, Verdict.OK),
        (404, Verdict.NOT_FOUND),
        (401, Verdict.UNAUTHORIZED),
        (403, Verdict.UNAUTHORIZED),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (599, Verdict.RETRY),
        (301, Verdict.FAIL),
        (400, Verdict.FAIL),
        (410, Verdict.FAIL),
        (422, Verdict.FAIL),
    ],
)
def test_classify(status: int, verdict: Verdict) -> None:
    assert classify(status) is verdict


@given(
    st.integers(min_value=1, max_value=60),
    st.floats(min_value=0.001, max_value=10),
    st.floats(min_value=0.001, max_value=100),
    st.floats(min_value=0, max_value=0.999999),
)
def test_backoff_keeps_half_the_exponential_step_and_respects_the_cap(
    failures: int, initial: float, cap: float, unit: float
) -> None:
    step = min(cap, initial * 2 ** (failures - 1))
    delay = backoff_seconds(failures, initial, cap, unit)
    assert step / 2 <= delay <= step + 1e-9


def test_backoff_grows_exponentially_until_the_cap() -> None:
    delays = [backoff_seconds(n, 0.5, 30, 0.999) for n in range(1, 10)]
    assert delays[:4] == pytest.approx([0.5, 1.0, 2.0, 4.0], rel=1e-3)
    assert max(delays) == pytest.approx(30, rel=1e-3)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    for garbage in (None, "", "soon", "-3", "nan", "inf"):
        assert parse_retry_after(garbage, now) is None


@given(st.floats(min_value=0, max_value=3600), st.floats(min_value=0, max_value=0.999999))
def test_retry_after_is_never_earlier_than_asked_and_barely_later(
    asked: float, unit: float
) -> None:
    delay = retry_after_delay(asked, unit)
    assert asked <= delay <= asked + min(1.0, asked * 0.1)
