"""The bare endpoint runs on the producer's HTTP stack, not on uvicorn's command-line defaults."""

from __future__ import annotations

import http.client
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bench.http_stack import ASGI_LIFESPAN, uvicorn_command
from bench.proc import free_port, wait_port

# Answers the client address and scheme the server handed over, as a proxy-aware app reads them.
_ECHO_APP = (
    ASGI_LIFESPAN
    + """    import json
    body = json.dumps({"client": scope["client"][0], "scheme": scope["scheme"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""
)


@pytest.fixture
def echo_port(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "echo.py").write_text(_ECHO_APP)
    port = free_port()
    server = subprocess.Popen(uvicorn_command("echo:app", port), cwd=tmp_path)
    try:
        wait_port(port)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def test_the_bare_endpoint_skips_proxy_headers_and_the_server_header(echo_port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", echo_port, timeout=10)
    connection.request(
        "POST", "/", b"{}", {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    )
    response = connection.getresponse()
    # uvicorn's defaults would trust the loopback proxy and say who is serving.
    assert orjson.loads(response.read()) == {"client": "127.0.0.1", "scheme": "http"}
    assert response.getheader("server") is None
    connection.close()
