"""streams.runtime.gate: work of a revoked or older generation is refused."""

from __future__ import annotations

from streams.runtime.gate import CommitGate


def test_work_of_the_current_generation_is_admitted() -> None:
    gate = CommitGate()
    assert gate.admits(fetched_in=3, current=3)


def test_work_of_an_older_generation_is_refused() -> None:
    assert not CommitGate().admits(fetched_in=2, current=3)


def test_once_revoked_even_the_current_generation_is_refused_until_the_next() -> None:
    gate = CommitGate()
    gate.revoke(3)
    assert not gate.admits(fetched_in=3, current=3)
    assert gate.admits(fetched_in=4, current=4)
