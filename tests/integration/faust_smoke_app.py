"""A tiny Faust app for the smoke test: an agent that keeps a Table and sends to another topic.

Run as a real worker: `python tests/integration/faust_smoke_app.py worker`, configured by SMOKE_* variables.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import faust

app = faust.App(
    os.environ["SMOKE_APP_ID"],
    broker=f"kafka://{os.environ['SMOKE_BOOTSTRAP']}",
    store="memory://",
    datadir=os.environ["SMOKE_DATADIR"],
    web_host="127.0.0.1",
    web_port=int(os.environ["SMOKE_WEB_PORT"]),
    topic_partitions=int(os.environ["SMOKE_PARTITIONS"]),
    processing_guarantee=os.environ.get("SMOKE_GUARANTEE", "exactly_once"),
    topic_allow_declare=True,
)
source = app.topic(os.environ["SMOKE_SOURCE"], key_type=str, value_type=str)
sink = app.topic(os.environ["SMOKE_SINK"], key_type=str, value_type=str)
counts = app.Table("counts", default=int, partitions=int(os.environ["SMOKE_PARTITIONS"]))


@app.agent(source)
async def count(stream: faust.StreamT[str]) -> AsyncIterator[None]:
    async for key, value in stream.items():
        counts[key] += 1
        await sink.send(key=key, value=f"{value}:{counts[key]}")
        yield None


if __name__ == "__main__":
    app.main()
