"""bench.b5_state's alternating runs, and the note B5's rolling restart gets (bench.notes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.b5_state import Bodies, alternating, complete_sessions
from bench.notes import notes

# The last full run's figures, as committed (its details file is not).
LATEST = Path(__file__).parents[3] / "bench" / "results" / "latest.json"


async def test_each_variant_runs_twice_in_the_order_a_b_b_a_and_keeps_its_longer_run() -> None:
    calls: list[tuple[str, int]] = []
    waits = {0: 1.5, 1: 5.7, 2: 5.6, 3: 1.6}

    async def measure(variant: str, run: int) -> dict[str, Any]:
        calls.append((variant, run))
        return {"variant": variant, "run": run, "longest_wait_s": waits[run]}

    out = await alternating(("dynamic", "static"), measure)

    assert calls == [("dynamic", 0), ("static", 1), ("static", 2), ("dynamic", 3)]
    assert (out["dynamic"]["run"], out["dynamic"]["runs_longest_wait_s"]) == (3, [1.5, 1.6])
    assert (out["static"]["run"], out["static"]["runs_longest_wait_s"]) == (1, [5.7, 5.6])


def test_complete_sessions_are_their_two_halves_under_fresh_ids() -> None:
    sessions = complete_sessions(Bodies(seed=1), 3.0)
    assert len({sid for sid, _ in sessions}) == 3
    for sid, halves in sessions:
        assert [h.event_type for h in halves] == ["session.created", "session.ended"]
        assert {h.session_id for h in halves} == {sid}


def test_the_rolling_restart_gets_its_note_only_when_both_memberships_measured() -> None:
    results = json.loads(LATEST.read_text())
    b5: dict[str, Any] = {"figures": results, "rss_mb_empty": 80.9, "empty_startup_s": 2.39}
    details = {"b5": b5}
    restart = {"sessions": 2100, "stop_to_ready_s": 4.7, "wait_p99_s": 5.27}
    b5["rolling_restart_dynamic"] = restart | {"longest_wait_s": 1.6, "runs_longest_wait_s": [1.6]}
    without_static = [n for n in notes(results, details) if "rolling restart" in n]
    assert without_static == []
    b5["rolling_restart_static"] = restart | {"longest_wait_s": 5.7, "runs_longest_wait_s": [5.7]}
    (note,) = [n for n in notes(results, details) if "rolling restart" in n]
    assert "[1.6] s with the default membership" in note
    assert "[5.7] s as a static member" in note
    assert "2,100 complete sessions" in note
