"""The bench's process helpers: ports with room for a producer's several admin listeners."""

from __future__ import annotations

import socket

from bench.proc import free_port


def test_free_port_leaves_room_for_the_ports_after_it() -> None:
    port = free_port(room=3)
    with socket.socket() as a, socket.socket() as b, socket.socket() as c:
        for sock, candidate in ((a, port), (b, port + 1), (c, port + 2)):
            sock.bind(("127.0.0.1", candidate))  # raises if the run is not free
