"""What the enricher's /readyz answers. Pure.

The enricher reads the stable ends of its partitions every commit interval (their lag comes from
them). A cut-off enricher's fetches just come back empty, so without that read nothing would
tell it from an idle one: past `limit_s` without an answer, it is not ready.
"""

from __future__ import annotations

from streams.readiness import Readiness


def readiness(
    *, started: bool, authorized: bool, owns: bool, unanswered_s: float, limit_s: float
) -> Readiness:
    if not started:
        return Readiness(503, {"status": "starting"})
    if owns and unanswered_s >= limit_s:
        return Readiness(503, {"status": "unreachable", "unanswered_s": round(unanswered_s)})
    if not authorized:
        return Readiness(503, {"status": "unauthorized"})
    return Readiness(200, {"status": "ready"})
