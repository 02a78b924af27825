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
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import TIMEOUT_S
from tests.integration.metadata_proxy import MetadataProxy
from tests.integration.readiness_probes import cut_off, read_after, readyz_says
from tests.integration.worker_fixtures import WorkerEnv, WorkerProcess

pytestmark = pytest.mark.integration

STALL_S = 3.0
ENDS_READ = "sessionflow_partition_ends_read_timestamp_seconds"


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
    url = f"http://127.0.0.1:{worker.port}/readyz"
    await readyz_says(url, "ready", TIMEOUT_S)
    await read_after(partial(asyncio.to_thread, worker.total, ENDS_READ), time.time(), STALL_S)

    held_at = await cut_off(proxy, url, STALL_S)
    # The lag and stall figures are as old as the last reading, and the metric says how old.
    assert worker.total(ENDS_READ) <= held_at

    proxy.release()
    await readyz_says(url, "ready", TIMEOUT_S)
    await read_after(partial(asyncio.to_thread, worker.total, ENDS_READ), held_at, STALL_S)
    assert worker.alive(), worker.log_tail()
