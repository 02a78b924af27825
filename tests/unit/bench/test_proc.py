"""The bench's process helpers: ports with room for a producer's several admin listeners, never
handed out twice, in lanes for processes that pick side by side."""

from __future__ import annotations

import socket

import pytest

from bench.proc import PORT_BLOCK, free_port, share_ports


def test_free_port_leaves_room_for_the_ports_after_it() -> None:
    port = free_port(room=3)
    with socket.socket() as a, socket.socket() as b, socket.socket() as c:
        for sock, candidate in ((a, port), (b, port + 1), (c, port + 2)):
            sock.bind(("127.0.0.1", candidate))  # raises if the run is not free


def test_free_port_never_hands_out_a_port_twice() -> None:
    ports = [free_port(room=2) for _ in range(200)]
    taken = [p + i for p in ports for i in range(2)]
    assert len(set(taken)) == len(taken)


def test_processes_side_by_side_pick_in_their_own_lanes() -> None:
    before = share_ports(1, 3)
    try:
        ports = [free_port(room=2) for _ in range(50)]
    finally:
        share_ports(*before)  # under xdist, this worker's own lane
    assert {(p + i) // PORT_BLOCK % 3 for p in ports for i in range(2)} == {1}


def test_a_lane_outside_the_lanes_is_refused() -> None:
    with pytest.raises(ValueError, match="lane 2 is not one of 2"):
        share_ports(2, 2)
