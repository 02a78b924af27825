"""tests/polling: the tests' one poller awaits async checks, threads plain ones, and refuses a
lambda that only creates a coroutine (it would be truthy at once and never run)."""

from __future__ import annotations

import pytest

from tests.polling import wait_until


async def test_async_and_plain_checks_are_polled_until_true() -> None:
    calls = {"async": 0, "plain": 0}

    async def third_time() -> bool:
        calls["async"] += 1
        return calls["async"] == 3

    def second_time() -> bool:
        calls["plain"] += 1
        return calls["plain"] == 2

    await wait_until(third_time, "the third call", 5)
    await wait_until(second_time, "the second call", 5)
    assert calls == {"async": 3, "plain": 2}


async def test_a_lambda_around_a_coroutine_is_refused() -> None:
    async def never() -> bool:
        return False

    with pytest.raises(TypeError, match="not a lambda"):
        await wait_until(lambda: never(), "a wrapped check", 5)


async def test_a_check_that_stays_false_fails_after_its_deadline() -> None:
    with pytest.raises(AssertionError, match="waiting for: nothing"):
        await wait_until(lambda: False, "nothing", 0.3)
