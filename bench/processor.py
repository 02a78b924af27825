"""The worker's processor alone: B3's events through `SessionProcessor.process`, in this process.

No broker, no Faust, no threads: the CPU time the worker's own decisions cost per raw event
(decode and validate, the core, the state codec, the outputs' encoding, the metrics), over an
in-memory partition, in batches of the worker's default size. Best of several repetitions of
process CPU time, so a busy machine disturbs it far less than the end-to-end figures; the
micro benchmark behind the A/B figures of the processor's changes (bench/__main__.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace

from bench.webhooks import session_plan
from cli.traffic import Mix, Plan
from streams.metrics import WorkerMetrics
from streams.processor import INDEX_SCAN_SLICE, OutputTopics, SessionProcessor
from streams.runtime.table import MemoryPartition
from streams.runtime.unit import Unit
from streams.settings import WorkerSettings

REPEATS = 5
BATCH: int = WorkerSettings.model_fields["batch_max_records"].default


@dataclass(frozen=True, slots=True)
class _Record:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def records(plan: Plan) -> list[_Record]:
    received = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()).encode()
    return [
        _Record(
            offset,
            (d.session_id or d.message_id).encode(),
            d.body,
            [
                ("message-id", d.message_id.encode()),
                ("event-type", d.event_type.encode()),
                ("received-at", received),
            ],
        )
        for offset, d in enumerate(plan.deliveries)
    ]


def new_processor(ttl_ms: int, scan_slice: int = INDEX_SCAN_SLICE) -> SessionProcessor:
    """A processor as the worker builds it, its outputs going to plain topic names."""
    return SessionProcessor(
        OutputTopics(completed="completed", incomplete="incomplete", dlq="dlq"),
        WorkerMetrics(max_intents=50),
        ttl_ms=ttl_ms,
        grace_ms=15_000,
        settle_ms=10_000,
        scan_slice=scan_slice,
    )


def us_per_event(events: list[_Record], ttl_ms: int, repeats: int = REPEATS) -> tuple[float, int]:
    """Process CPU microseconds per event, best of `repeats` runs over a fresh table each; and
    the completed records one run emitted."""
    best: float | None = None
    completed = 0
    for _ in range(repeats):
        processor = new_processor(ttl_ms)
        store = MemoryPartition(SimpleNamespace(data={}), 0, 1)  # one partition: all keys
        completed = 0
        started = time.process_time()
        for at in range(0, len(events), BATCH):
            unit = Unit(0, store)
            processor.process(unit, events[at : at + BATCH], ())
            store.write(unit.changes)
            completed += len(unit.outputs.get("completed", ()))
        took = time.process_time() - started
        best = took if best is None else min(best, took)
    assert best is not None
    return round(best / len(events) * 1e6, 1), completed


def run(sessions: int, mix: Mix, repeats: int = REPEATS) -> dict[str, float]:
    plan = session_plan(sessions, seed=11, mix=mix)
    ttl_ms = int(WorkerSettings.model_fields["session_ttl_seconds"].default * 1000)
    us, completed = us_per_event(records(plan), ttl_ms, repeats)
    if completed != len(plan.expectations.complete):
        raise RuntimeError(
            f"the processor completed {completed} of {len(plan.expectations.complete)} sessions"
        )
    return {"events": len(plan.deliveries), "us_per_event": us}
