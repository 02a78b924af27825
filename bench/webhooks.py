"""Signed webhook requests as raw HTTP/1.1 bytes, built before the clock starts."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cli import traffic
from sessionflow.events import SESSION_ENDED
from sessionflow.signing import HeaderFamily, Signer

PATH = "/webhooks/agntix"
# A fixed, valid bench-only key: the producer under test is started with it.
SECRET = "whsec_" + base64.b64encode(b"sessionflow-bench-key-32-bytes!!").decode()
# Every share 0: complete pairs, in order, each half sent once.
_IN_ORDER = traffic.Mix()


def raw_request(delivery: traffic.Delivery, signer: Signer, timestamp: int) -> bytes:
    headers = signer.headers(HeaderFamily.SVIX, delivery.message_id, timestamp, delivery.body)
    lines = [
        f"POST {PATH} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(delivery.body)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + delivery.body


def session_plan(sessions: int, seed: int, mix: traffic.Mix = _IN_ORDER) -> traffic.Plan:
    """Pairs only (no planned-type events), with the mix's duplicate and reorder shares."""
    return traffic.plan(sessions, seed=seed, now=datetime.now(tz=UTC), mix=mix)


def ended_requests(count: int, seed: int = 7) -> list[bytes]:
    """`count` distinct signed `session.ended` requests (realistic, with analysis, ~2 KB)."""
    plan = session_plan(count, seed)
    signer = Signer([SECRET])
    now = int(time.time())
    return [raw_request(d, signer, now) for d in plan.deliveries if d.event_type == SESSION_ENDED]


def sign_all(deliveries: Iterable[traffic.Delivery]) -> list[bytes]:
    signer = Signer([SECRET])
    now = int(time.time())
    return [raw_request(d, signer, now) for d in deliveries]


def write_requests(path: Path, requests: Sequence[bytes]) -> None:
    """Length-prefixed records, read back by the load generator process."""
    with path.open("wb") as out:
        for r in requests:
            out.write(len(r).to_bytes(4, "big"))
            out.write(r)


def read_requests(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return out


def lua_escape(raw: bytes) -> bytes:
    """A Lua double-quoted string literal holding exactly these bytes."""
    escaped = (
        raw.replace(b"\\", b"\\\\")
        .replace(b'"', b'\\"')
        .replace(b"\r", b"\\r")
        .replace(b"\n", b"\\n")
        .replace(b"\0", b"\\0")
    )
    return b'"' + escaped + b'"'


def wrk_script(path: Path, requests: Sequence[bytes]) -> None:
    """A wrk Lua script that cycles through the pre-signed requests."""
    with path.open("wb") as out:
        out.write(b"local reqs = {\n")
        for r in requests:
            out.write(lua_escape(r) + b",\n")
        out.write(
            b"}\nlocal n = #reqs\nlocal i = 0\n"
            b"request = function()\n  i = i % n + 1\n  return reqs[i]\nend\n"
        )
