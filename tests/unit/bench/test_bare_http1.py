"""B1's second baseline: a bare endpoint on the producer's own HTTP layer, run as B1 runs it."""

from __future__ import annotations

import http.client
import subprocess
import sys
from pathlib import Path

import bench
from bench.proc import free_port, wait_port

SCRIPT = Path(bench.__file__).with_name("bare_http1.py")


def test_it_takes_every_post_and_answers_the_readiness_probe(tmp_path: Path) -> None:
    port = free_port()
    # From another folder, as B1 starts it: the script imports only the installed producer.
    server = subprocess.Popen([sys.executable, str(SCRIPT), str(port)], cwd=tmp_path)
    try:
        wait_port(port)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(2):  # one connection, kept alive
            connection.request("POST", "/webhooks/agntix", b"x" * 2000)
            response = connection.getresponse()
            assert (response.status, response.read()) == (202, b'{"status":"accepted"}')
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        server.terminate()
        server.wait(10)
