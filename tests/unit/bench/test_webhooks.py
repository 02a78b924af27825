"""Pre-signed requests: valid Svix signatures, a round-trip file format, Lua escaping."""

from __future__ import annotations

from pathlib import Path

from svix.webhooks import Webhook

from bench.webhooks import SECRET, ended_requests, lua_escape, read_requests, write_requests


def test_requests_are_signed_session_ended_and_round_trip(tmp_path: Path) -> None:
    requests = ended_requests(5)
    assert len(requests) == 5
    head, body = requests[0].split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    assert int(headers["Content-Length"]) == len(body)
    Webhook(SECRET).verify(body.decode(), headers)  # raises if the signature is wrong
    assert b'"session.ended"' in body
    path = tmp_path / "r.bin"
    write_requests(path, requests)
    assert read_requests(path) == requests


def test_lua_escape() -> None:
    assert lua_escape(b'a"b\\c\r\n') == b'"a\\"b\\\\c\\r\\n"'
