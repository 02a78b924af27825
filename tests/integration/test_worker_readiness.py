"""A worker cut off from the broker says so: /readyz and the age of its lag figures.

Before, a worker behind a network partition answered /readyz 200 and kept its last lag and stall
figures for as long as the partition lasted: the expiry ticker's read of the partitions' ends
hung (25 s of a 25 s cut, `var/evidence/s43_cut_before.txt` on the machine it was seen), and
nothing else looked at the broker. The broker sits behind a proxy that holds every byte
(tests/integration/metadata_proxy.py), which is what a partition looks like to both sides.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TIMEOUT_S
from tests.integration.metadata_proxy import MetadataProxy
from tests.integration.worker_fixtures import WorkerEnv, WorkerProcess

pytestmark = pytest.mark.integration

STALL_S = 3.0


def readyz(worker: WorkerProcess) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{worker.port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def ends_read_at(worker: WorkerProcess) -> float:
    """sessionflow_partition_ends_read_timestamp_seconds, as the worker's /metrics says."""
    for family in text_string_to_metric_families(worker.metrics()):
        for sample in family.samples:
            if sample.name == "sessionflow_partition_ends_read_timestamp_seconds":
                return float(sample.value)
    raise AssertionError("no sessionflow_partition_ends_read_timestamp_seconds")


async def ends_read_after(worker: WorkerProcess, after: float, within_s: float) -> None:
    """Wait until the worker has read its partitions' ends since `after` (Unix time)."""
    deadline = time.monotonic() + within_s
    while (read_at := await asyncio.to_thread(ends_read_at, worker)) <= after:
        assert time.monotonic() < deadline, f"ends last read at {read_at}, not after {after}"
        await asyncio.sleep(0.1)


async def answer_becomes(
    worker: WorkerProcess, status: str, within_s: float
) -> tuple[int, dict[str, object]]:
    deadline = time.monotonic() + within_s
    seen: list[tuple[int, dict[str, object]]] = []
    while time.monotonic() < deadline:
        answer = await asyncio.to_thread(readyz, worker)
        if answer[1].get("status") == status:
            return answer
        if not seen or seen[-1] != answer:
            seen.append(answer)
        await asyncio.sleep(0.2)
    raise AssertionError(f"/readyz not {status!r} within {within_s} s; it said {seen}")


async def test_a_worker_cut_off_from_the_broker_is_not_ready_and_its_figures_age(
    proxied_broker: MetadataProxy, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    proxy = proxied_broker
    env = WorkerEnv(
        bootstrap=proxy.bootstrap,
        namespace="cut.",
        root=tmp_path,
        extra={"SESSIONFLOW_STALL_SECONDS": str(STALL_S)},
    )
    await env.make_topics()
    worker = WorkerProcess(env, "w1")
    workers.append(worker)
    worker.start()
    await asyncio.to_thread(worker.wait_ready)
    await answer_becomes(worker, "ready", TIMEOUT_S)
    await ends_read_after(worker, time.time(), within_s=STALL_S)

    proxy.hold()
    held_at = time.time()
    status, body = await answer_becomes(worker, "unreachable", STALL_S + 5)
    assert status == 503
    unanswered = body["unanswered_s"]
    assert isinstance(unanswered, int)
    assert unanswered >= STALL_S
    # The lag and stall figures are as old as the last reading, and the metric says how old.
    assert ends_read_at(worker) <= held_at

    proxy.release()
    await answer_becomes(worker, "ready", TIMEOUT_S)
    await ends_read_after(worker, held_at, within_s=STALL_S)
    assert worker.alive(), worker.log_tail()
