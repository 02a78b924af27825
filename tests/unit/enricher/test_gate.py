"""The auth gate: closed after a refusal, one probe per interval, open again on success."""

from __future__ import annotations

import asyncio

from enricher.gate import AuthGate


async def test_an_open_gate_lets_everyone_through() -> None:
    gate = AuthGate(retry_s=10)
    await asyncio.wait_for(gate.wait(), 0.1)
    assert gate.is_open


async def test_a_closed_gate_lets_one_probe_through_per_interval_and_opens_for_all() -> None:
    gate = AuthGate(retry_s=0.2)
    assert gate.refused(401) is True
    assert gate.refused(401) is False  # already closed: not news for the log
    assert gate.refused_status == 401
    passed: list[int] = []

    async def waiter(n: int) -> None:
        await gate.wait()
        passed.append(n)

    tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
    await asyncio.sleep(0.1)
    assert passed == []  # nobody before the first probe is due
    await asyncio.sleep(0.2)
    assert len(passed) == 1  # one probe
    gate.refused(401)
    await asyncio.sleep(0.05)
    assert len(passed) == 1
    assert gate.accepted() is True
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert sorted(passed) == [0, 1, 2]
    assert gate.accepted() is False
