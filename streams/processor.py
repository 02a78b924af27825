"""The thin shell around the core: read state, call the core, write state, send outputs.

The runtime (streams/runtime/) hands the processor one partition's share of a fetched batch at a
time, as a unit of work: the raw webhooks and the expiry ticks of that partition. The processor
reads and changes the table and sends outputs through the unit; the runtime ends the unit in one
step (exactly-once: outputs, changelog and, at the next commit, offsets in the partition's
transaction; at-least-once: outputs acknowledged before the table records the step) and decides
when to commit. Outputs go to the input's partition number (all topics share the partition count).

Expiry is driven by tick records, not by a bare timer: a timer has no records, so it could
neither change the table nor join a partition's transaction. Each worker's timer sends a tick
(the time, and the raw partition's end offset: streams/expiry.py) to the ticks topic's
partitions it owns; ticks and webhooks of a partition arrive in the same unit, and the tick
expires the partition's due sessions there. The expiry's table deletes, incomplete records and
the tick's offset commit together: a crash before the commit replays the tick against the state
as it was (nothing emitted twice), a crash after it leaves nothing to redo (nothing lost). A
rebalance moves the partition's state and its ticks together, so its new owner continues from
the committed state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final, Protocol

from sessionflow.raw_record import REASON
from sessionflow.raw_record import STAGE as HEADER_STAGE
from streams import core, state_codec
from streams.decode import DecodeError, decode
from streams.expiry import ExpiryIndex, RawProgress, TickDecodeError, decode_tick
from streams.metrics import WorkerMetrics
from streams.models import CompletedSession, encode_output
from streams.runtime.runner import Record

log = logging.getLogger(__name__)

STAGE: Final = b"streams"
# Table entries read into a partition's expiry index per unit while the index is rebuilt after a
# rebalance (about 4 us each): a unit stalls the worker for tens of milliseconds, where reading a
# partition of 83k sessions at once took 0.3 s, and a takeover of several took seconds.
INDEX_SCAN_SLICE: Final = 10_000


class Unit(Protocol):
    """One partition's table and outputs while a batch is applied (streams/runtime/unit.py)."""

    @property
    def partition(self) -> int: ...
    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes | None) -> None: ...
    def send(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None: ...
    def scan(self) -> Iterator[tuple[bytes, bytes]]: ...


@dataclass(frozen=True, slots=True)
class OutputTopics:
    completed: str
    incomplete: str
    dlq: str


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class SessionProcessor:
    """Applies the core's decisions to a partition's table and outputs, a batch at a time."""

    def __init__(
        self,
        topics: OutputTopics,
        metrics: WorkerMetrics,
        *,
        ttl_ms: int,
        grace_ms: int,
        settle_ms: int,
        scan_slice: int = INDEX_SCAN_SLICE,
    ) -> None:
        self._topics = topics
        self._metrics = metrics
        self._ttl_ms = ttl_ms
        self._scan_slice = scan_slice
        self.index = ExpiryIndex()
        self.progress = RawProgress(grace_ms=grace_ms, settle_ms=settle_ms)
        # Per partition whose index is being rebuilt: the rest of its table, still to be read.
        self._scans: dict[int, _IndexScan] = {}
        # Pending halves per partition: counted from its table as its index is rebuilt, and
        # changed by every step since the rebuild began.
        self._pending: dict[int, int] = {}

    def process(self, unit: Unit, raw: Sequence[Record], ticks: Sequence[Record]) -> None:
        """One partition's webhooks, then its ticks (so a tick sees the webhooks before it);
        first, while the partition's index is being rebuilt, the next slice of its table."""
        try:
            if not self.index.built(unit.partition):
                self._rebuild_index(unit)
            for record in raw:
                self.on_raw(
                    unit, record.key, record.value, headers_of(record.headers), record.offset
                )
            for record in ticks:
                self.on_tick(unit, record.value)
        finally:
            self._metrics.flush()

    def on_raw(
        self,
        unit: Unit,
        key: bytes | None,
        value: bytes | None,
        headers: Mapping[str, bytes],
        offset: int,
    ) -> None:
        self.progress.processed(unit.partition, offset)
        now = now_ms()
        try:
            env = decode(value or b"", headers, now)
        except DecodeError as exc:
            self._dead_letter(unit, key, value or b"", headers, exc.reason)
            return
        if env.session_id is None:
            # Planned or unknown event types: counted; they stay in the raw topic.
            self._metrics.observe(env.event_type, core.Step(state=None, changed=False), now, now)
            return
        table_key = env.session_id.encode()
        state = self._load(unit, table_key)
        try:
            step = core.on_event(state, env, now, self._ttl_ms)
        except Exception:  # a bug of ours on one record must not stop the partition
            log.exception("core failed on a record; dead-lettering it")
            self._dead_letter(unit, key, env.body, headers, "internal_error")
            return
        self._apply(unit, table_key, step)
        self._metrics.observe(env.event_type, step, now, env.received_at_ms)

    def on_tick(self, unit: Unit, value: bytes | None) -> None:
        """Expire the partition's due sessions, as far as the tick allows (streams/expiry.py)."""
        partition = unit.partition
        try:
            tick = decode_tick(value or b"")
        except TickDecodeError as exc:
            log.warning("ignored a ticks record on partition %d: %s", partition, exc)
            return
        now = now_ms()
        horizon = self.progress.horizon_ms(partition, tick, now)
        if horizon is None or not self.index.built(partition):
            return  # a later tick expires what this one would have
        for table_key in self.index.pop_due(partition, horizon):
            state = self._load(unit, table_key)
            if state is None:
                continue  # already paired-and-expired or expired: a stale index entry
            step = core.on_expiry(state, horizon, self._ttl_ms, now)
            if step.changed:
                self._apply(unit, table_key, step)
                self._metrics.observe_outputs(step)

    def forget(self) -> None:
        """The partitions moved: the index and positions are rebuilt as their records come."""
        self.index.invalidate()
        self.progress.reset()
        self._scans.clear()
        self._pending.clear()
        self._metrics.pending.set(0)

    def _load(self, unit: Unit, table_key: bytes) -> core.SessionState | None:
        stored = unit.get(table_key)
        return None if stored is None else state_codec.decode_state(stored, table_key.decode())

    def _apply(self, unit: Unit, table_key: bytes, step: core.Step) -> None:
        if step.pending_delta and unit.partition in self._pending:
            self._pending[unit.partition] += step.pending_delta
            self._metrics.pending.inc(step.pending_delta)
        for record in step.outputs:
            topic = (
                self._topics.completed
                if isinstance(record, CompletedSession)
                else self._topics.incomplete
            )
            unit.send(topic, table_key, encode_output(record))
        if step.changed:
            if step.state is None:
                unit.put(table_key, None)
            else:
                unit.put(table_key, state_codec.encode_state(step.state))
                self.index.push(
                    unit.partition, core.deadline_ms(step.state, self._ttl_ms), table_key
                )

    def _dead_letter(
        self,
        unit: Unit,
        key: bytes | None,
        value: bytes,
        headers: Mapping[str, bytes],
        reason: str,
    ) -> None:
        self._metrics.dead_lettered.labels(reason).inc()
        log.warning("dead-lettered a raw record: %s (partition %d)", reason, unit.partition)
        kept = [
            (name, data) for name, data in headers.items() if name not in (REASON, HEADER_STAGE)
        ]
        unit.send(
            self._topics.dlq, key, value, [*kept, (REASON, reason.encode()), (HEADER_STAGE, STAGE)]
        )

    def _rebuild_index(self, unit: Unit) -> None:
        """Read the next slice of the partition's table into its index.

        The scan reads the table as it stood when the rebuild began, before the unit changed
        anything: every key changed since is pushed by `_apply` with its new deadline, and its
        pending delta counted, so the index and the count are whole once the scan ends.
        """
        partition = unit.partition
        scan = self._scans.get(partition)
        if scan is None:
            scan = self._scans[partition] = _IndexScan(unit.scan(), time.monotonic())
            self.index.reset(partition)
            self._pending[partition] = 0
        read = pending = 0
        for table_key, stored in islice(scan.entries, self._scan_slice):
            deadline, is_pending = state_codec.stored_deadline_ms(
                stored, table_key.decode(), self._ttl_ms
            )
            self.index.push(partition, deadline, table_key)
            pending += is_pending
            read += 1
        scan.read += read
        scan.units += 1
        self._pending[partition] += pending
        self._metrics.pending.inc(pending)
        if read < self._scan_slice:
            del self._scans[partition]
            self.index.mark_built(partition)
            log.info(
                "expiry index of partition %d rebuilt: %d sessions, %d pending now,"
                " in %d units over %.1f s",
                partition,
                scan.read,
                self._pending[partition],
                scan.units,
                time.monotonic() - scan.started,
            )


@dataclass(slots=True)
class _IndexScan:
    """A partition's table as it stood when its index rebuild began, read a slice per unit."""

    entries: Iterator[tuple[bytes, bytes]]
    started: float  # time.monotonic()
    read: int = 0
    units: int = 0


def headers_of(raw: Any) -> dict[str, bytes]:
    """Kafka record headers (a list of (name, value) pairs, or None) as a dict."""
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return {str(k): bytes(v) for k, v in raw.items()}
    return {str(k): bytes(v) for k, v in raw if v is not None}
