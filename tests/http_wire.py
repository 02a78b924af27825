"""An HTTP/1.1 answer read off a stream, for the tests that speak to a server in raw bytes."""

from __future__ import annotations

import asyncio
from typing import NamedTuple


class RawResponse(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


async def read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> RawResponse:
    """One answer: the status, the headers (names lower-cased) and `content-length` bytes of
    body (none for an answer to HEAD)."""
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers.get("content-length", "0"))
    return RawResponse(int(status_line.split(" ")[1]), headers, await reader.readexactly(length))
