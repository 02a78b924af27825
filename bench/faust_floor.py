"""B3's framework floor: a Faust agent that only receives each raw event and does nothing else.

No table, no outputs, no decoding: what faust-streaming itself costs per event on this machine,
in the processing guarantee given. The worker can be no faster than this. Prints
`done FIRST LAST` (epoch seconds of the first and the N-th event) once N events arrived, then
idles until terminated.

    python -m bench.faust_floor BOOTSTRAP RAW_TOPIC PARTITIONS EVENTS GUARANTEE DATA_DIR
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import AsyncIterator

import faust


def main(argv: list[str]) -> None:
    bootstrap, raw, partitions, events, guarantee, data_dir = argv
    app = faust.App(
        # Named under the raw topic's run prefix: the run's clean-up deletes Faust's own topics.
        f"{raw}.faust-floor-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=data_dir,
        processing_guarantee=guarantee,
        topic_partitions=int(partitions),
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    source = app.topic(
        raw, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    wanted = int(events)
    seen = 0
    first = 0.0

    @app.agent(source)
    async def drain(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        nonlocal seen, first
        async for _event in stream.events():
            seen += 1
            if seen == 1:
                first = time.time()
            if seen == wanted:
                sys.stdout.write(f"done {first} {time.time()}\n")
                sys.stdout.flush()
            yield None

    del drain
    faust.Worker(
        app, loglevel="warn", quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1:])
