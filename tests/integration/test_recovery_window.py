"""Issue 17, the stalled partition: its root causes, reproduced on demand against a real broker.

faust-streaming 0.15.3 loses records at the end of recovery in two ways (streams/runtime/
consumer.py): what is queued during the recovery seek is cleared when the flow resumes, and what
it dropped before the seek is not read again when the partition has no committed offset.
recovery_window_app.py opens each on demand; these tests show the loss with Faust's own consumer
and none with streams.runtime's (both guarantees).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from sessionflow.settings import KafkaSettings
from sessionflow.topics import TopicSpec, ensure_topics
from tests.conftest import TIMEOUT_S
from tests.polling import wait_until
from tests.reliability.outputs import committed_offsets

pytestmark = pytest.mark.integration

APP = Path(__file__).with_name("recovery_window_app.py")
RECORDS = 6
# How long the seek is held: Faust's consumer ends the hold as soon as it has read the whole
# source, which a loaded machine once took more than 2 s to do; the runtime's reads nothing
# during the hold (what its tests assert), so its hold always runs to the end.
HOLD_S = {"faust": 10.0, "sessionflow": 2.0}
# How long the outcome must stay the same before the test reads it as final.
SETTLE_S = 2.0
# How many times a Faust scenario is set up before its window counts as never opening.
WINDOW_ATTEMPTS = 3


class Window:
    """One run of the window app: its topics, its worker process, what it processed."""

    def __init__(
        self, bootstrap: str, unique: str, root: Path, consumer: str, guarantee: str, fault: str
    ) -> None:
        self.bootstrap = bootstrap
        self.source, self.sink = f"t-{unique}.in", f"t-{unique}.out"
        self.app_id = f"window-{unique}"
        self.root = root
        self.env = {
            **os.environ,
            "WINDOW_CONSUMER": consumer,
            "WINDOW_GUARANTEE": guarantee,
            "WINDOW_FAULT": fault,
            "WINDOW_APP_ID": self.app_id,
            "WINDOW_BOOTSTRAP": bootstrap,
            "WINDOW_DATADIR": str(root),
            "WINDOW_SOURCE": self.source,
            "WINDOW_SINK": self.sink,
            "WINDOW_LAST_OFFSET": str(RECORDS - 1),
            "WINDOW_HOLD_S": str(HOLD_S[consumer]),
        }
        self.log_path = root / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def prepare(self, committed: int | None = None) -> None:
        settings = KafkaSettings(kafka_bootstrap_servers=self.bootstrap)
        changelog = f"{self.app_id}-seen-changelog"
        compacted = {"cleanup.policy": "compact"}
        await ensure_topics(
            settings,
            [
                TopicSpec(self.source, 1, 1, {}),
                TopicSpec(f"{self.source}.ticks", 1, 1, {}),
                TopicSpec(self.sink, 1, 1, {}),
                TopicSpec(changelog, 1, 1, compacted),
            ],
        )
        # A table with something to restore: recovery then runs the fetcher while it reads the
        # changelog, and the flow is still running when it seeks the source (as in the worker).
        await self.produce(changelog, [(b'"restored"', b"1")])
        await self.produce(self.source, [(None, f"record {i}".encode()) for i in range(RECORDS)])
        if committed is not None:
            await self.commit(committed)

    async def commit(self, offset: int) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.app_id, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tp = TopicPartition(self.source, 0)
            consumer.assign([tp])
            await consumer.commit({tp: offset})
        finally:
            await consumer.stop()

    async def produce(self, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait(topic, value, key=key, partition=0)
        finally:
            await producer.stop()

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                # Faust's worker command starts its web server unless told not to, whatever the
                # app's web_enabled says: on 0.0.0.0:6066, which a worker of `make run` may hold.
                [sys.executable, str(APP), "worker", "--without-web", "--loglevel", "warn"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    async def outcome(self) -> tuple[set[int], int]:
        """(offsets processed, the group's committed offset), once it held still for SETTLE_S."""
        last: tuple[set[int], int] | None = None
        since = time.monotonic()
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            assert self.proc.poll() is None, self.log_tail()
            now = (await self.processed(), await self.committed())
            if now != last:
                last, since = now, time.monotonic()
            elif now[0] and time.monotonic() - since >= SETTLE_S:
                return now
            await asyncio.sleep(0.3)
        raise AssertionError(f"no steady outcome in {TIMEOUT_S}s:\n{self.log_tail()}")

    async def processed(self) -> set[int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(self.sink, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            end = (await consumer.end_offsets([tp]))[tp]
            offsets: set[int] = set()
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=500)
                offsets |= {int(r.value) for r in batch.get(tp, [])}
            return offsets
        finally:
            await consumer.stop()

    async def committed(self) -> int:
        return (await committed_offsets(self.bootstrap, self.app_id, self.source)).get(0, -1)

    async def logged(self, text: str) -> None:
        """Wait until the worker's log holds `text`; fail at once if the worker exited."""

        def holds() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, self.log_tail()
            return text in self.log_path.read_text(errors="replace")

        await wait_until(holds, f"{text!r} in the worker's log")

    def logged_position(self, when: str) -> int:
        """The source position the worker logged as `window: position N <when>`."""
        return self.logged_figure(rf"window: position (\d+) {when}")

    def logged_figure(self, pattern: str) -> int:
        """The number in `pattern`'s group, from the worker's log."""
        match = re.search(pattern, self.log_path.read_text())
        assert match is not None, self.log_tail()
        return int(match.group(1))

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])


WindowFactory = Callable[[str, str, str], "Window"]


@pytest.fixture
def window_factory(kafka_bootstrap: str, unique: str, tmp_path: Path) -> Iterator[WindowFactory]:
    started: list[Window] = []

    def make(consumer: str, guarantee: str, fault: str) -> Window:
        # Each window its own topics, group and log: a test may set its scenario up again.
        root = tmp_path / f"window{len(started)}"
        root.mkdir()
        window = Window(
            kafka_bootstrap, f"{unique}{len(started)}", root, consumer, guarantee, fault
        )
        started.append(window)
        return window

    yield make
    for window in started:
        window.stop()


def _first_gap(offsets: set[int]) -> int:
    """The first offset above the smallest of `offsets` that is not one of them."""
    gap = min(offsets)
    while gap in offsets:
        gap += 1
    return gap


QUEUED = "queued_during_seek"
DROPPED = "dropped_before_seek"


async def test_faust_loses_what_it_queued_during_the_recovery_seek(
    window_factory: WindowFactory,
) -> None:
    # The window is open only when Faust's drain loop hands the records over during the seek. In
    # a clean-clone run and 2 of 20 loop runs (stop 30) it handed over none for the whole hold:
    # the read offset stayed at 1, the value the seek itself sets. Not seen in 114 runs since.
    # The worker now logs its position there too: still at 1, no fetch came; past the records, a
    # fetch came and the drain loop did not hand them over. The scenario is then set up afresh.
    for _ in range(WINDOW_ATTEMPTS):
        window = window_factory("faust", "at_least_once", QUEUED)
        # Committed at 1: what Faust drops before the seek is read again, only the window counts.
        await window.prepare(committed=1)
        window.start()
        processed, committed = await window.outcome()
        if f"window: read offset {RECORDS - 1} " in window.log_path.read_text():
            break
        window.stop()
    else:
        raise AssertionError(f"no open window in {WINDOW_ATTEMPTS} runs:\n{window.log_tail()}")
    # The records came from a fetch after the seek, which left the position past them, or (1 of
    # 14 runs with two cores kept busy) from one made before it, whose records the drain loop
    # went on handing over after the seek had moved the position back to the committed offset.
    # Faust then reads the source again from there once recovery is done, and its read-offset
    # filter drops every record but the last (its offset is the read offset): that one is handed
    # over a second time and processed, its first hand-over having been cleared with the queue.
    position = window.logged_figure(r"when the seek returned \(position (\d+)")
    again = {RECORDS - 1} if position < RECORDS else set()
    seen = (processed, committed, position, window.log_tail())
    # Only the event the agent held got through; what waited in the queue is gone.
    assert processed == {1} | again, seen
    assert committed == 2, seen
    # The partition goes on processing new records, but its commits stay behind the lost ones:
    # the stall the issue saw, with a lag a position-based gauge would report as 0.
    await window.produce(window.source, [(None, b"one more")])
    processed, committed = await window.outcome()
    seen = (processed, committed, position, window.log_tail())
    assert processed == {1, RECORDS} | again, seen
    assert committed == 2, seen


async def test_faust_never_reads_again_what_it_dropped_without_a_committed_offset(
    window_factory: WindowFactory,
) -> None:
    window = window_factory("faust", "at_least_once", DROPPED)
    await window.prepare()
    window.start()
    # Produced once the seek is done, so that it is read after it in every run.
    await window.logged(f"window: position {RECORDS} after the seek")
    await window.produce(window.source, [(None, b"one more")])
    processed, committed = await window.outcome()
    seen = (processed, committed, window.log_tail())
    # The seek moved the source from `before` past its records: Faust never reads them again,
    # and the record that came after is processed.
    before = window.logged_position("before the seek")
    assert RECORDS in processed, seen
    assert not processed & set(range(before, RECORDS)), seen
    # Faust commits up to the end of the first run of consecutive offsets its agent processed,
    # and never across a gap after that (faust Consumer._new_offset). When only the record that
    # came after was processed, the commit goes past the never-read ones: lost without a trace
    # (no stall, no lag). On a loaded machine Faust's first fetch can hand records to the agent
    # before recovery pauses the partition (1 run in 18 with two cores kept busy; once, in a
    # clean clone, 0, 4 and 5 but not 1 to 3): the commit then stays in front of the first lost
    # record, the stall of issue 17.
    assert committed == _first_gap(processed), seen


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_the_runtime_consumer_keeps_what_was_fetched_during_the_recovery_seek(
    window_factory: WindowFactory, guarantee: str
) -> None:
    window = window_factory("sessionflow", guarantee, QUEUED)
    await window.prepare(committed=1)
    window.start()
    processed, committed = await window.outcome()
    # The flow stayed stopped during the seek: nothing was handed over in the window.
    assert "window: read offset 1 " in window.log_path.read_text(), window.log_tail()
    assert processed == set(range(1, RECORDS)), processed
    assert committed == RECORDS


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_the_runtime_consumer_reads_again_what_was_dropped_without_a_committed_offset(
    window_factory: WindowFactory, guarantee: str
) -> None:
    window = window_factory("sessionflow", guarantee, DROPPED)
    await window.prepare()
    window.start()
    processed, committed = await window.outcome()
    assert "window: position 0 after the seek" in window.log_path.read_text(), window.log_tail()
    assert processed == set(range(RECORDS)), processed
    assert committed == RECORDS
