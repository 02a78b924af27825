"""bench/processor.py: the micro benchmark measures the real work, or refuses to say a figure."""

from __future__ import annotations

import pytest

from bench import processor
from bench.b3_worker import MIX
from streams.runtime.unit import Unit


def test_it_times_the_processor_over_a_plan_that_it_fully_pairs() -> None:
    out = processor.run(40, MIX, repeats=1)
    assert out["events"] > 80  # pairs and their duplicates
    assert out["us_per_event"] > 0


def test_a_processor_that_pairs_wrongly_gives_no_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processor, "BATCH", 1)  # still right: one event per unit
    processor.run(10, MIX, repeats=1)
    monkeypatch.setattr(Unit, "send", lambda self, *args, **kwargs: None)
    with pytest.raises(RuntimeError, match="completed 0 of 10"):
        processor.run(10, MIX, repeats=1)
